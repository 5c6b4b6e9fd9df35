// Saved queries: a semantic builder (dimensions, measures, filters from the catalog) for everyone,
// a raw SQL editor for analysts and admins, and a preview table of the first rows.
import { all, del, get, post, put } from "../api.js";
import {
  announce, busy, button, checkbox, clearErrors, field, formError, group, h, input, radio, replace, select, showErrors, table,
} from "../dom.js";
import { pageArgs, pager } from "../components.js";
import { time, viewerZone } from "../format.js";
import { navigate } from "../router.js";
import { can, canWrite } from "../session.js";
import { buttonLink, confirmed, ownerNames, ownerText, pageHead } from "./shared.js";

export async function queriesPage(main, params, query) {
  const [page, names] = await Promise.all([get("/api/saved-queries", pageArgs(query)), ownerNames()]);
  const columns = [
    { label: "Name", render: (q) => h("a", { href: `#/queries/${q.id}` }, q.name) },
    { label: "Kind", render: (q) => (q.kind === "sql" ? "Raw SQL" : "Semantic") },
    { label: "Shared", render: (q) => (q.shared ? "Yes" : "No") },
    { label: "Owner", render: (q) => ownerText(q, names) },
    { label: "Changed", render: (q) => time(q.updated_at) },
  ];
  replace(
    main,
    pageHead("Saved queries", buttonLink("New query", "#/queries/new")),
    table("Saved queries", columns, page.items, { empty: "No saved queries yet." }),
    pager(page, "Query pages"),
  );
}

const OPERATORS = [
  ["eq", "is"], ["ne", "is not"], ["gt", "greater than"], ["gte", "at least"], ["lt", "less than"], ["lte", "at most"],
  ["in", "is one of"], ["not_in", "is none of"], ["between", "between"], ["contains", "contains"],
  ["starts_with", "starts with"], ["is_null", "is empty"], ["is_not_null", "is not empty"],
];
const RELATIVE = ["today", "yesterday", "last_7_days", "last_30_days", "last_90_days", "this_week", "previous_week", "this_month",
  "previous_month", "this_quarter", "previous_quarter", "this_year", "previous_year", "month_to_date", "year_to_date"];

function fieldsOf(entity) {
  if (!entity) return [];
  return [
    ...entity.dimensions.map((d) => ({ name: d.name, label: d.label || d.name, type: d.type })),
    ...entity.measures.map((m) => ({ name: m.name, label: m.label || m.name, type: m.type || "decimal" })),
  ];
}

function parseValue(op, text, type) {
  if (op === "is_null" || op === "is_not_null") return null;
  const one = (raw) => {
    const value = raw.trim();
    if ((type === "integer" || type === "decimal") && value !== "" && !Number.isNaN(Number(value))) return Number(value);
    if (type === "boolean") return value === "true" || value === "yes";
    return value;
  };
  if (op === "in" || op === "not_in") return text.split(",").map(one).filter((v) => v !== "");
  if (op === "between") return text.split(",").map(one);
  return one(text);
}

function valueText(value) {
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function rowsEditor(label, name, makeRow, initial) {
  const list = h("ul", { class: "rows" });
  const rows = [];
  const draw = () => replace(list, rows.map((row, index) => row.element(index, () => { rows.splice(index, 1); draw(); })));
  for (const item of initial) rows.push(makeRow(item));
  draw();
  const add = button(`Add ${label}`, () => {
    rows.push(makeRow({}));
    draw();
    list.lastElementChild?.querySelector("select, input")?.focus();
  }, { kind: "secondary" });
  return { element: h("div", { dataset: { field: name, errorId: `${name}-error` } }, list, add, h("p", { class: "field-error", id: `${name}-error`, hidden: true })), rows, redraw: draw };
}

export async function queryEditor(main, { id }) {
  const [saved, entities] = await Promise.all([id ? get(`/api/saved-queries/${id}`) : null, all("/api/semantic-entities")]);
  let sources = [];
  if (can.dataSources()) sources = (await all("/api/data-sources")).map((s) => [s.id, `${s.name} (${s.kind})`]);
  else if (can.rawSql()) {
    // Analysts cannot list data sources; they can use those the catalog's entities read from.
    const seen = new Map();
    for (const entity of entities) if (!seen.has(entity.data_source_id)) seen.set(entity.data_source_id, `The data source of “${entity.name}”`);
    sources = [...seen.entries()];
  }
  const q = saved || { kind: "semantic", dimensions: [], measures: [], filters: [], order_by: [], shared: false };
  const writable = !saved || canWrite(saved);
  const name = input({ value: q.name || "", required: true, autocomplete: "off" });
  const description = h("textarea", { rows: 2 });
  description.value = q.description || "";
  const shared = checkbox("Shared: everyone may read it and schedule reports on it", { checked: q.shared });

  const semanticChoice = radio("Semantic (pick from the catalog)", { name: "kind", value: "semantic", checked: q.kind !== "sql", disabled: Boolean(saved) });
  const sqlChoice = radio("Raw SQL", { name: "kind", value: "sql", checked: q.kind === "sql", disabled: Boolean(saved) || !can.rawSql() });

  const entitySelect = select([["", "Choose an entity…"], ...entities.map((e) => [e.id, e.name])], { value: q.entity_id || "" });
  const picks = h("div", {});
  const fieldOptions = () => fieldsOf(entities.find((e) => e.id === entitySelect.value)).map((f) => [f.name, f.label]);
  const typeOf = (fieldName) => fieldsOf(entities.find((e) => e.id === entitySelect.value)).find((f) => f.name === fieldName)?.type;

  let dimensionBoxes = [];
  let measureBoxes = [];
  const drawPicks = () => {
    const entity = entities.find((e) => e.id === entitySelect.value);
    if (!entity) {
      replace(picks, h("p", { class: "muted" }, entities.length ? "Choose an entity to see its dimensions and measures." : "The catalog is empty: an analyst adds entities under Catalog."));
      dimensionBoxes = [];
      measureBoxes = [];
      return;
    }
    dimensionBoxes = entity.dimensions.map((d) => checkbox(d.label || d.name, { value: d.name, checked: q.dimensions.includes(d.name) }));
    measureBoxes = entity.measures.map((m) => checkbox(m.label || m.name, { value: m.name, checked: q.measures.includes(m.name) }));
    replace(
      picks,
      entity.description ? h("p", { class: "hint" }, entity.description) : null,
      group("Dimensions (group by)", dimensionBoxes, { name: "dimensions" }),
      group("Measures", measureBoxes, { name: "measures" }),
    );
    filters.redraw();
    order.redraw();
  };

  const filterRow = (item) => {
    const state = { field: item.field || "", op: item.op || "eq", value: valueText(item.value) };
    return {
      read: () => ({ field: state.field, op: state.op, value: parseValue(state.op, state.value, typeOf(state.field)) }),
      element: (index, remove) => {
        const fieldSelect = select([["", "Field…"], ...fieldOptions()], { value: state.field, onChange: (e) => { state.field = e.target.value; } });
        const op = select(OPERATORS, { value: state.op, onChange: (e) => { state.op = e.target.value; } });
        const value = input({ value: state.value, list: "relative-periods", onInput: (e) => { state.value = e.target.value; } });
        return h(
          "li",
          { dataset: { field: `filters.${index}`, errorId: `filter-${index}-error` } },
          field(`Filter ${index + 1}: field`, fieldSelect, { name: `filters.${index}.field` }),
          field("Condition", op, { name: `filters.${index}.op` }),
          field("Value", value, { name: `filters.${index}.value`, hint: "Lists: separate with commas. Dates may be relative, e.g. last_30_days." }),
          button("Remove", remove, { kind: "link", "aria-label": `Remove filter ${index + 1}` }),
          h("p", { class: "field-error", id: `filter-${index}-error`, hidden: true }),
        );
      },
    };
  };
  const orderRow = (item) => {
    const state = { field: item.field || "", direction: item.direction || "asc" };
    return {
      read: () => ({ ...state }),
      element: (index, remove) =>
        h(
          "li",
          { dataset: { field: `order_by.${index}`, errorId: `order-${index}-error` } },
          field(`Sort ${index + 1}: field`, select([["", "Field…"], ...fieldOptions()], { value: state.field, onChange: (e) => { state.field = e.target.value; } }), { name: `order_by.${index}.field` }),
          field("Direction", select([["asc", "Ascending"], ["desc", "Descending"]], { value: state.direction, onChange: (e) => { state.direction = e.target.value; } })),
          button("Remove", remove, { kind: "link", "aria-label": `Remove sort ${index + 1}` }),
          h("p", { class: "field-error", id: `order-${index}-error`, hidden: true }),
        ),
    };
  };
  const filters = rowsEditor("filter", "filters", filterRow, q.filters || []);
  const order = rowsEditor("sort", "order_by", orderRow, q.order_by || []);
  const limit = input({ type: "number", min: 1, value: q.limit ?? "", inputmode: "numeric" });
  entitySelect.addEventListener("change", drawPicks);

  const source = select([["", "Choose a data source…"], ...sources], { value: q.data_source_id || "" });
  const sql = h("textarea", { class: "mono sql", rows: 10, spellcheck: "false" });
  sql.value = q.sql || "";

  const semanticPart = h(
    "fieldset",
    {},
    h("legend", {}, "Build the query"),
    field("Entity", entitySelect, { name: "entity_id" }),
    picks,
    h("h3", {}, "Filters"),
    filters.element,
    h("h3", {}, "Sort"),
    order.element,
    field("Row limit", limit, { name: "limit", hint: "Leave empty for no limit of its own." }),
  );
  const sqlPart = h(
    "fieldset",
    {},
    h("legend", {}, "SQL"),
    field("Data source", source, { name: "data_source_id" }),
    field("One SELECT statement", sql, { name: "sql", hint: "Runs read-only, with a time limit; other statements are refused." }),
  );
  const showKind = () => {
    const isSql = sqlChoice.querySelector("input").checked;
    semanticPart.hidden = isSql;
    sqlPart.hidden = !isSql;
  };
  for (const choice of [semanticChoice, sqlChoice]) choice.querySelector("input").addEventListener("change", showKind);

  const previewBox = h("div", { class: "preview-rows" });
  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save query" : "Create query");
  const previewButton = button("Preview", async (event) => {
    await busy(event.currentTarget, async () => {
      replace(previewBox, h("h2", { id: "preview-heading" }, "Preview"), h("p", { class: "muted", role: "status" }, "Running the query…"));
      try {
        const result = await post(`/api/saved-queries/${id}/preview`, undefined, { timezone: viewerZone, limit: 50 });
        drawPreview(result);
      } catch (error) {
        replace(previewBox, h("h2", { id: "preview-heading" }, "Preview"), h("p", { class: "form-error", role: "alert" }, error.message));
      }
    });
  }, { disabled: !id });
  const drawPreview = (result) => {
    const numeric = result.columns.map((c) => ["integer", "decimal", "float", "number"].includes(c.type));
    const columns = result.columns.map((c, index) => ({
      label: c.label || c.name,
      header: false,
      className: numeric[index] ? "number" : null,
      render: (row) => (row[index] === null ? "—" : String(row[index])),
    }));
    replace(
      previewBox,
      h("h2", { id: "preview-heading" }, "Preview"),
      h("p", { class: "muted" }, `${result.row_count} row${result.row_count === 1 ? "" : "s"}${result.truncated ? " shown; there are more" : ""}. Relative dates resolved in ${viewerZone}.`),
      table("Preview of the query's rows", columns, result.rows, { empty: "The query returned no rows.", cards: false }),
    );
  };

  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h(
      "fieldset",
      { disabled: !writable },
      h("legend", {}, "Query"),
      field("Name", name, { name: "name" }),
      field("Description", description, { name: "description" }),
      shared,
      group("Kind", [semanticChoice, sqlChoice], { name: "kind", hint: can.rawSql() ? null : "Raw SQL needs the analyst or admin role." }),
    ),
    h("fieldset", { disabled: !writable, class: "plain" }, semanticPart, sqlPart),
    h(
      "div",
      { class: "form-actions" },
      writable ? submit : h("p", { class: "muted" }, "Shared with you read-only."),
      previewButton,
      saved && writable
        ? button("Delete", async () => {
            if (!confirmed(`Delete the saved query “${saved.name}”?`)) return;
            try {
              await del(`/api/saved-queries/${id}`);
              announce("Query deleted.", "good");
              navigate("/queries");
            } catch (error) {
              announce(error.message, "bad");
            }
          }, { kind: "danger" })
        : null,
    ),
    id ? null : h("p", { class: "hint" }, "Save the query to preview its rows."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const isSql = sqlChoice.querySelector("input").checked;
    const common = { name: name.value.trim(), description: description.value.trim() || null, shared: shared.querySelector("input").checked };
    const payload = isSql
      ? { ...common, data_source_id: source.value || null, sql: sql.value.trim() || null }
      : {
          ...common,
          entity_id: entitySelect.value || null,
          dimensions: dimensionBoxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
          measures: measureBoxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
          filters: filters.rows.map((row) => row.read()),
          order_by: order.rows.map((row) => row.read()).filter((o) => o.field),
          limit: limit.value ? Number(limit.value) : null,
        };
    await busy(submit, async () => {
      try {
        const result = id ? await put(`/api/saved-queries/${id}`, payload) : await post("/api/saved-queries", payload);
        announce("Query saved. Preview it to check the rows.", "good");
        navigate(`/queries/${result.id}`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  drawPicks();
  showKind();
  replace(
    main,
    h("p", {}, h("a", { href: "#/queries" }, "← All saved queries")),
    h("h1", {}, saved ? saved.name : "New saved query"),
    h("datalist", { id: "relative-periods" }, RELATIVE.map((period) => h("option", { value: period }))),
    form,
    previewBox,
  );
}
