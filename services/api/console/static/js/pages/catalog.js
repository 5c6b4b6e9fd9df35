// The semantic catalog (analysts and admins): entities over a table, with named dimensions and measures.
import { all, get, post, put } from "../api.js";
import { announce, busy, button, checkbox, clearErrors, field, formError, h, input, replace, select, showErrors, table } from "../dom.js";
import { pageArgs, pager } from "../components.js";
import { navigate } from "../router.js";
import { can, canWrite } from "../session.js";
import { buttonLink, deleteButton, pageHead } from "./shared.js";

const TYPES = ["string", "integer", "decimal", "date", "datetime", "boolean"];
const AGGREGATIONS = [["sum", "Sum"], ["count", "Count rows"], ["count_distinct", "Count distinct"], ["avg", "Average"], ["min", "Minimum"], ["max", "Maximum"]];

export async function entitiesPage(main, params, query) {
  const page = await get("/api/semantic-entities", pageArgs(query));
  const columns = [
    { label: "Name", render: (e) => h("a", { href: `#/catalog/${e.id}` }, e.name) },
    { label: "Table", render: (e) => h("code", {}, e.table) },
    { label: "Dimensions", render: (e) => String(e.dimensions.length), className: "number" },
    { label: "Measures", render: (e) => String(e.measures.length), className: "number" },
    { label: "Shared", render: (e) => (e.shared ? "Yes" : "No") },
  ];
  replace(
    main,
    pageHead("Catalog", buttonLink("New entity", "#/catalog/new")),
    h("p", { class: "muted" }, "An entity names a table's columns once, as dimensions and measures; saved queries pick from them."),
    table("Semantic entities", columns, page.items, { empty: "No entities yet." }),
    pager(page, "Catalog pages"),
  );
}

function rowList(name, items, makeRow) {
  const list = h("ul", { class: "rows" });
  const rows = items.map(makeRow);
  const draw = () => replace(list, rows.map((row, index) => row.element(index, () => { rows.splice(index, 1); draw(); })));
  draw();
  return {
    rows,
    draw,
    add: (item) => {
      rows.push(makeRow(item));
      draw();
    },
    element: h("div", { dataset: { field: name, errorId: `${name}-error` } }, list, h("p", { class: "field-error", id: `${name}-error`, hidden: true })),
  };
}

function textField(label, state, key, path, props = {}) {
  return field(label, input({ value: state[key] ?? "", autocomplete: "off", onInput: (e) => { state[key] = e.target.value; }, ...props }), { name: path });
}

function dimensionRow(item) {
  const state = { name: item.name || "", column: item.column || "", type: item.type || "string", label: item.label || "", format: item.format || "" };
  return {
    read: () => ({ name: state.name.trim(), column: state.column.trim(), type: state.type, label: state.label.trim() || null, format: state.format.trim() || null }),
    element: (index, remove) =>
      h(
        "li",
        { dataset: { field: `dimensions.${index}`, errorId: `dim-${index}-error` } },
        textField(`Dimension ${index + 1}: name`, state, "name", `dimensions.${index}.name`),
        textField("Column", state, "column", `dimensions.${index}.column`, { list: "table-columns" }),
        field("Type", select(TYPES, { value: state.type, onChange: (e) => { state.type = e.target.value; } }), { name: `dimensions.${index}.type` }),
        textField("Label", state, "label", `dimensions.${index}.label`),
        button("Remove", remove, { kind: "link", "aria-label": `Remove dimension ${index + 1}` }),
        h("p", { class: "field-error", id: `dim-${index}-error`, hidden: true }),
      ),
  };
}

function measureRow(item) {
  const state = { name: item.name || "", column: item.column || "", aggregation: item.aggregation || "sum", label: item.label || "", format: item.format || "" };
  return {
    read: () => ({
      name: state.name.trim(),
      column: state.column.trim() || null,
      aggregation: state.aggregation,
      label: state.label.trim() || null,
      format: state.format.trim() || null,
    }),
    element: (index, remove) =>
      h(
        "li",
        { dataset: { field: `measures.${index}`, errorId: `measure-${index}-error` } },
        textField(`Measure ${index + 1}: name`, state, "name", `measures.${index}.name`),
        textField("Column", state, "column", `measures.${index}.column`, { list: "table-columns" }),
        field("Aggregation", select(AGGREGATIONS, { value: state.aggregation, onChange: (e) => { state.aggregation = e.target.value; } }), { name: `measures.${index}.aggregation` }),
        textField("Label", state, "label", `measures.${index}.label`),
        textField("Format", state, "format", `measures.${index}.format`, { placeholder: "currency, integer, percent:1…" }),
        button("Remove", remove, { kind: "link", "aria-label": `Remove measure ${index + 1}` }),
        h("p", { class: "field-error", id: `measure-${index}-error`, hidden: true }),
      ),
  };
}

const NUMERIC = new Set(["integer", "decimal"]);

export async function entityEditor(main, { id }) {
  const [entity, entities] = await Promise.all([id ? get(`/api/semantic-entities/${id}`) : null, all("/api/semantic-entities")]);
  let sources = [];
  if (can.dataSources()) sources = (await all("/api/data-sources")).map((s) => [s.id, `${s.name} (${s.kind})`]);
  else {
    const seen = new Map();
    for (const e of entities) if (!seen.has(e.data_source_id)) seen.set(e.data_source_id, `The data source of “${e.name}”`);
    sources = [...seen.entries()];
  }
  const e = entity || { dimensions: [], measures: [], shared: true };
  const writable = !entity || canWrite(entity);
  const name = input({ value: e.name || "", required: true, autocomplete: "off" });
  const description = h("textarea", { rows: 2 });
  description.value = e.description || "";
  const source = select([["", "Choose a data source…"], ...sources], { value: e.data_source_id || "" });
  const tableInput = input({ value: e.table || "", list: "source-tables", autocomplete: "off" });
  const tables = h("datalist", { id: "source-tables" });
  const columnsList = h("datalist", { id: "table-columns" });
  const shared = checkbox("Shared: every user may build queries on it", { checked: e.shared });
  const dimensions = rowList("dimensions", e.dimensions, dimensionRow);
  const measures = rowList("measures", e.measures, measureRow);
  const introspection = can.dataSources();
  const fillStatus = h("p", { class: "muted", role: "status" });

  const loadTables = async () => {
    replace(tables);
    if (!introspection || !source.value) return;
    try {
      const found = await get(`/api/data-sources/${source.value}/tables`);
      replace(tables, found.items.map((t) => h("option", { value: t.name })));
    } catch {
      /* the field still takes a typed name */
    }
  };
  const loadColumns = async () => {
    if (!introspection || !source.value || !tableInput.value.trim()) return [];
    const found = await get(`/api/data-sources/${source.value}/tables/${encodeURIComponent(tableInput.value.trim())}/columns`);
    replace(columnsList, found.items.map((c) => h("option", { value: c.name })));
    return found.items;
  };
  source.addEventListener("change", loadTables);
  tableInput.addEventListener("change", () => loadColumns().catch(() => []));

  const fill = button("Fill from the table's columns", async (event) => {
    await busy(event.currentTarget, async () => {
      try {
        const columns = await loadColumns();
        if (!columns.length) {
          fillStatus.textContent = "Choose a data source and a table first.";
          return;
        }
        const have = new Set([...dimensions.rows, ...measures.rows].map((row) => row.read().name));
        if (!have.has("count")) measures.add({ name: "count", column: null, aggregation: "count", label: "Count" });
        for (const column of columns) {
          if (NUMERIC.has(column.type)) {
            if (!have.has(column.name)) measures.add({ name: column.name, column: column.name, aggregation: "sum", label: column.name });
          } else if (!have.has(column.name)) {
            dimensions.add({ name: column.name, column: column.name, type: TYPES.includes(column.type) ? column.type : "string", label: column.name });
          }
        }
        fillStatus.textContent = `Added the table's ${columns.length} columns: text and dates as dimensions, numbers as summed measures. Adjust as needed.`;
      } catch (error) {
        fillStatus.textContent = error.message;
      }
    });
  });

  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save entity" : "Create entity");
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h(
      "fieldset",
      { disabled: !writable },
      h("legend", {}, "Entity"),
      field("Name", name, { name: "name" }),
      field("Description", description, { name: "description" }),
      field("Data source", source, { name: "data_source_id" }),
      field("Table", tableInput, { name: "table", hint: "As the database names it, e.g. orders or public.orders." }),
      shared,
      introspection ? h("div", {}, fill, fillStatus) : h("p", { class: "hint" }, "Only an admin can list a data source's tables and columns; type them here."),
    ),
    h("fieldset", { disabled: !writable }, h("legend", {}, "Dimensions"), h("p", { class: "hint" }, "What rows are grouped and filtered by."),
      dimensions.element, button("Add dimension", () => dimensions.add({}))),
    h("fieldset", { disabled: !writable }, h("legend", {}, "Measures"), h("p", { class: "hint" }, "Numbers computed per group. A count needs no column."),
      measures.element, button("Add measure", () => measures.add({}))),
    h(
      "div",
      { class: "form-actions" },
      writable ? submit : h("p", { class: "muted" }, "Shared with you read-only."),
      entity && writable
        ? deleteButton(`Delete the entity “${entity.name}”?`, `/api/semantic-entities/${id}`, "/catalog")
        : null,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const payload = {
      name: name.value.trim(),
      description: description.value.trim() || null,
      data_source_id: source.value || null,
      table: tableInput.value.trim(),
      shared: shared.querySelector("input").checked,
      dimensions: dimensions.rows.map((row) => row.read()),
      measures: measures.rows.map((row) => row.read()),
    };
    await busy(submit, async () => {
      try {
        const saved = id ? await put(`/api/semantic-entities/${id}`, payload) : await post("/api/semantic-entities", payload);
        announce("Entity saved.", "good");
        navigate(`/catalog/${saved.id}`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  replace(main, h("p", {}, h("a", { href: "#/catalog" }, "← The catalog")), h("h1", {}, entity ? entity.name : "New entity"), tables, columnsList, form);
  loadTables();
}
