// Data sources (admins): where queries read from, with "test connection".
import { get, post, put } from "../api.js";
import { announce, busy, button, clearErrors, field, formError, h, input, replace, select, showErrors, table } from "../dom.js";
import { pageArgs, pager } from "../components.js";
import { navigate } from "../router.js";
import { buttonLink, deleteButton, pageHead } from "./shared.js";

const KINDS = [["postgresql", "PostgreSQL"], ["mysql", "MySQL / MariaDB"], ["sqlite", "SQLite file"]];

function where(source) {
  if (source.kind === "sqlite") return source.path;
  return `${source.username ? `${source.username}@` : ""}${source.host}${source.port ? `:${source.port}` : ""}/${source.database}`;
}

export async function dataSourcesPage(main, params, query) {
  const page = await get("/api/data-sources", pageArgs(query));
  const columns = [
    { label: "Name", render: (s) => h("a", { href: `#/data-sources/${s.id}` }, s.name) },
    { label: "Kind", render: (s) => Object.fromEntries(KINDS)[s.kind] || s.kind },
    { label: "Where", render: (s) => h("code", {}, where(s)) },
    { label: "Password", render: (s) => (s.kind === "sqlite" ? "—" : s.has_password ? "Stored (encrypted)" : "None") },
  ];
  replace(
    main,
    pageHead("Data sources", buttonLink("New data source", "#/data-sources/new")),
    h("p", { class: "muted" }, "Give each source a login that may only SELECT (docs/security.md)."),
    table("Data sources", columns, page.items, { empty: "No data sources yet." }),
    pager(page, "Data source pages"),
  );
}

function testResult(result) {
  const tone = result.ok ? (result.warning ? "warn" : "good") : "bad";
  return h(
    "div",
    { class: `result ${tone}`, role: "status" },
    h("strong", {}, result.ok ? `Connected in ${result.elapsed_ms} ms.` : "Could not connect."),
    result.reason ? h("p", {}, result.reason) : null,
    result.warning ? h("p", {}, `Warning: ${result.warning}`) : null,
  );
}

export async function dataSourceEditor(main, { id }) {
  const source = id ? await get(`/api/data-sources/${id}`) : null;
  const s = source || { kind: "postgresql", options: {} };
  const name = input({ value: s.name || "", required: true, autocomplete: "off" });
  const kind = select(KINDS, { value: s.kind });
  const host = input({ value: s.host || "", autocomplete: "off" });
  const port = input({ type: "number", min: 1, max: 65535, value: s.port ?? "", inputmode: "numeric" });
  const database = input({ value: s.database || "", autocomplete: "off" });
  const username = input({ value: s.username || "", autocomplete: "off" });
  const password = input({ type: "password", autocomplete: "new-password", placeholder: s.has_password ? "unchanged" : "" });
  const path = input({ value: s.path || "", autocomplete: "off", placeholder: "sales.db" });
  const sslmode = select([["", "Driver default"], "disable", "allow", "prefer", "require", "verify-ca", "verify-full"], { value: s.options?.sslmode || "" });
  const charset = input({ value: s.options?.charset || "", placeholder: "utf8mb4", autocomplete: "off" });
  const server = h(
    "div",
    {},
    h("div", { class: "two-columns" }, field("Host", host, { name: "host" }), field("Port", port, { name: "port", hint: "Empty: the usual port." })),
    field("Database", database, { name: "database" }),
    h("div", { class: "two-columns" }, field("User name", username, { name: "username" }),
      field("Password", password, { name: "password", hint: source?.has_password ? "Leave empty to keep the stored password." : "Stored encrypted; never shown again." })),
  );
  const pgOptions = field("SSL mode", sslmode, { name: "options.sslmode" });
  const myOptions = field("Character set", charset, { name: "options.charset" });
  const file = field("File", path, { name: "path", hint: "Relative to the directory the server allows SQLite files in." });
  const show = () => {
    server.hidden = kind.value === "sqlite";
    file.hidden = kind.value !== "sqlite";
    pgOptions.hidden = kind.value !== "postgresql";
    myOptions.hidden = kind.value !== "mysql";
  };
  kind.addEventListener("change", show);
  show();
  const resultBox = h("div", {});
  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save data source" : "Create data source");
  const testButton = button("Test connection", async (event) => {
    await busy(event.currentTarget, async () => {
      replace(resultBox, h("p", { class: "muted", role: "status" }, "Connecting…"));
      try {
        replace(resultBox, testResult(await post(`/api/data-sources/${id}/test`)));
      } catch (error) {
        replace(resultBox, h("p", { class: "form-error", role: "alert" }, error.message));
      }
    });
  }, { disabled: !id });
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h("fieldset", {}, h("legend", {}, "Connection"), field("Name", name, { name: "name" }), field("Kind", kind, { name: "kind" }), server, file, pgOptions, myOptions),
    h(
      "div",
      { class: "form-actions" },
      submit,
      testButton,
      source
        ? deleteButton(`Delete the data source “${source.name}”?`, `/api/data-sources/${id}`, "/data-sources")
        : null,
    ),
    id ? null : h("p", { class: "hint" }, "Save it to test the connection."),
    resultBox,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const payload = { name: name.value.trim(), kind: kind.value, options: {} };
    if (kind.value === "sqlite") payload.path = path.value.trim();
    else {
      Object.assign(payload, { host: host.value.trim(), port: port.value ? Number(port.value) : null, database: database.value.trim(), username: username.value.trim() || null });
      if (password.value) payload.password = password.value;
      if (kind.value === "postgresql" && sslmode.value) payload.options.sslmode = sslmode.value;
      if (kind.value === "mysql" && charset.value.trim()) payload.options.charset = charset.value.trim();
    }
    await busy(submit, async () => {
      try {
        const saved = id ? await put(`/api/data-sources/${id}`, payload) : await post("/api/data-sources", payload);
        announce("Data source saved. Test the connection to be sure.", "good");
        navigate(`/data-sources/${saved.id}`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  replace(main, h("p", {}, h("a", { href: "#/data-sources" }, "← All data sources")), h("h1", {}, source ? source.name : "New data source"), form);
}
