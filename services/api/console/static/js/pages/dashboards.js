// Dashboards: ordered widgets, each a saved query drawn as a table or chart (kind, x, series, measures).
import { all, get, post, put } from "../api.js";
import { announce, busy, button, checkbox, clearErrors, field, formError, h, input, replace, select, showErrors, table } from "../dom.js";
import { pageArgs, pager } from "../components.js";
import { time } from "../format.js";
import { navigate } from "../router.js";
import { can, canWrite } from "../session.js";
import { buttonLink, deleteButton, ownerNames, ownerText, pageHead } from "./shared.js";

const CHARTS = [["table", "Table"], ["bar", "Bar chart"], ["line", "Line chart"], ["area", "Area chart"], ["pie", "Pie chart"], ["donut", "Donut chart"], ["kpi", "KPI (one number)"]];

export async function dashboardsPage(main, params, query) {
  const [page, names] = await Promise.all([get("/api/dashboards", pageArgs(query)), ownerNames()]);
  const columns = [
    { label: "Name", render: (d) => h("a", { href: `#/dashboards/${d.id}` }, d.name) },
    { label: "Widgets", render: (d) => String(d.widgets.length), className: "number" },
    { label: "Shared", render: (d) => (d.shared ? "Yes" : "No") },
    { label: "Owner", render: (d) => ownerText(d, names) },
    { label: "Changed", render: (d) => time(d.updated_at) },
  ];
  replace(
    main,
    pageHead("Dashboards", can.editDashboards() ? buttonLink("New dashboard", "#/dashboards/new") : null),
    table("Dashboards", columns, page.items, { empty: "No dashboards yet." }),
    pager(page, "Dashboard pages"),
  );
}

function widgetRow(queries) {
  return (item) => {
    const state = {
      title: item.title || "",
      saved_query_id: item.saved_query_id || "",
      chart: item.chart || "table",
      x: item.x || "",
      series: item.series || "",
      measures: (item.measures || []).join(", "),
    };
    const text = (label, key, path, props = {}) =>
      field(label, input({ value: state[key], autocomplete: "off", onInput: (e) => { state[key] = e.target.value; }, ...props }), { name: path });
    return {
      read: () => ({
        title: state.title.trim(),
        saved_query_id: state.saved_query_id || null,
        chart: state.chart,
        x: state.x.trim() || null,
        series: state.series.trim() || null,
        measures: state.measures.split(",").map((m) => m.trim()).filter(Boolean),
      }),
      element: (index, remove, move) =>
        h(
          "li",
          { dataset: { field: `widgets.${index}`, errorId: `widget-${index}-error` } },
          text(`Widget ${index + 1}: title`, "title", `widgets.${index}.title`),
          field("Saved query", select([["", "Choose…"], ...queries.map((q) => [q.id, q.name])], { value: state.saved_query_id, onChange: (e) => { state.saved_query_id = e.target.value; } }), { name: `widgets.${index}.saved_query_id` }),
          field("Chart", select(CHARTS, { value: state.chart, onChange: (e) => { state.chart = e.target.value; } }), { name: `widgets.${index}.chart` }),
          text("X axis column", "x", `widgets.${index}.x`, { placeholder: "automatic" }),
          text("Series column", "series", `widgets.${index}.series`, { placeholder: "none" }),
          text("Measures (comma-separated)", "measures", `widgets.${index}.measures`, { placeholder: "every numeric column" }),
          button("Move up", () => move(index, -1), { kind: "link", disabled: index === 0, "aria-label": `Move widget ${index + 1} up` }),
          button("Remove", remove, { kind: "link", "aria-label": `Remove widget ${index + 1}` }),
          h("p", { class: "field-error", id: `widget-${index}-error`, hidden: true }),
        ),
    };
  };
}

export async function dashboardEditor(main, { id }) {
  const [dashboard, queries] = await Promise.all([id ? get(`/api/dashboards/${id}`) : null, all("/api/saved-queries")]);
  const d = dashboard || { widgets: [], shared: false };
  const writable = can.editDashboards() && (!dashboard || canWrite(dashboard));
  const name = input({ value: d.name || "", required: true, autocomplete: "off" });
  const description = h("textarea", { rows: 2 });
  description.value = d.description || "";
  const shared = checkbox("Shared: everyone may read it and schedule reports on it", { checked: d.shared });
  const makeRow = widgetRow(queries);
  const rows = d.widgets.map(makeRow);
  const list = h("ul", { class: "rows" });
  const draw = () =>
    replace(
      list,
      rows.map((row, index) =>
        row.element(
          index,
          () => { rows.splice(index, 1); draw(); },
          (at, step) => { const [moved] = rows.splice(at, 1); rows.splice(at + step, 0, moved); draw(); },
        ),
      ),
    );
  draw();
  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save dashboard" : "Create dashboard");
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h("fieldset", { disabled: !writable }, h("legend", {}, "Dashboard"), field("Name", name, { name: "name" }), field("Description", description, { name: "description" }), shared),
    h(
      "fieldset",
      { disabled: !writable, dataset: { field: "widgets", errorId: "widgets-error" } },
      h("legend", {}, "Widgets, in order"),
      h("p", { class: "hint" }, "Columns are the query's dimension and measure names; leave them empty to let the chart choose."),
      list,
      h("p", { class: "field-error", id: "widgets-error", hidden: true }),
      button("Add widget", () => { rows.push(makeRow({})); draw(); list.lastElementChild?.querySelector("input")?.focus(); }),
    ),
    h(
      "div",
      { class: "form-actions" },
      writable ? submit : h("p", { class: "muted" }, "Read-only for you."),
      dashboard && writable
        ? deleteButton(`Delete the dashboard “${dashboard.name}”?`, `/api/dashboards/${id}`, "/dashboards")
        : null,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const payload = {
      name: name.value.trim(),
      description: description.value.trim() || null,
      shared: shared.querySelector("input").checked,
      widgets: rows.map((row) => row.read()),
    };
    await busy(submit, async () => {
      try {
        const saved = id ? await put(`/api/dashboards/${id}`, payload) : await post("/api/dashboards", payload);
        announce("Dashboard saved.", "good");
        navigate(`/dashboards/${saved.id}`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  replace(main, h("p", {}, h("a", { href: "#/dashboards" }, "← All dashboards")), h("h1", {}, dashboard ? dashboard.name : "New dashboard"), form);
}
