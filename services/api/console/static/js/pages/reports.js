// Reports: the list, one report (next runs, run now, test, pause, history) and the editor.
import { all, del, get, patchOrPut, post, put } from "../api.js";
import {
  announce, busy, button, checkbox, clearErrors, field, fieldMessage, formError, group, h, input, radio, replace, select, showErrors, table,
} from "../dom.js";
import { PAGE_SIZE, debounce, destinationsEditor, nextRunsList, pageArgs, pager, scheduleBuilder, sectionHeading } from "../components.js";
import { TERMINAL, TRIGGER_WORDS, badge, duration, scheduleWords, time, viewerZone } from "../format.js";
import { navigate, poll, setQuery } from "../router.js";
import { sanitisedFragment } from "../safehtml.js";
import { canWrite, session } from "../session.js";
import { buttonLink, confirmed, localeOptions, ownerNames, ownerText, pageHead, summary } from "./shared.js";

const STATES = ["queued", "running", "rendered", "sending", "success", "partial", "failed", "skipped"];

function lastRun(summaryRun) {
  if (!summaryRun) return badge(null);
  return h(
    "div",
    { class: "last-run" },
    h("a", { href: `#/executions/${summaryRun.id}`, "aria-label": `Last run: ${summaryRun.status}, details` }, badge(summaryRun.status)),
    time(summaryRun.finished_at || summaryRun.scheduled_for),
  );
}

function activeBadge(report) {
  return report.is_active ? badge("success", "Active") : badge("skipped", "Paused");
}

export async function reportsPage(main, params, query) {
  const [page, names] = await Promise.all([get("/api/scheduled-reports", pageArgs(query)), ownerNames()]);
  const columns = [
    { label: "Name", render: (r) => h("a", { href: `#/reports/${r.id}` }, r.name) },
    { label: "Schedule", render: (r) => scheduleWords(r.schedule) },
    { label: "Next run", render: (r) => (r.is_active ? time(r.next_run_at) : h("span", { class: "muted" }, "Paused")) },
    { label: "Last run", render: (r) => lastRun(r.last_execution) },
    { label: "Owner", render: (r) => ownerText(r, names) },
    { label: "State", render: activeBadge },
  ];
  replace(
    main,
    pageHead("Reports", buttonLink("New report", "#/reports/new")),
    h("p", { class: "muted" }, `Next runs are shown in your time zone (${viewerZone}).`),
    table("Scheduled reports", columns, page.items, {
      empty: "No reports yet. A report runs a saved query or dashboard on a schedule and emails the files.",
    }),
    pager(page, "Report pages"),
  );
}

// What PUT needs to keep a report as it is (the GET answer has read-only fields PUT refuses).
export function reportBody(report) {
  return {
    name: report.name,
    description: report.description,
    saved_query_id: report.saved_query_id,
    dashboard_id: report.dashboard_id,
    schedule: report.schedule,
    destinations: keptDestinations(report.destinations || []),
    formats: report.formats,
    subject: report.subject,
    body: report.body,
    send_if_empty: report.send_if_empty,
    send_only_if_changed: report.send_only_if_changed,
    csv_bom: report.csv_bom,
    csv_separator: report.csv_separator,
    locale: report.locale,
    is_active: report.is_active,
  };
}

export function keptDestinations(destinations) {
  return destinations.map((d) =>
    d.kind === "email"
      ? { id: d.id, kind: "email", address: d.address || d.target, role: d.role || "to" }
      : { id: d.id, kind: d.kind, ...(d.channel ? { channel: d.channel } : {}) },
  );
}

function destinationText(d) {
  if (d.kind === "email") return `${d.role === "cc" ? "Cc" : "To"}: ${d.address || d.target}`;
  return `${d.kind}: ${d.target}${d.channel ? ` #${d.channel}` : ""}`;
}

async function sourceLink(report) {
  try {
    if (report.saved_query_id) {
      const query = await get(`/api/saved-queries/${report.saved_query_id}`);
      return h("a", { href: `#/queries/${query.id}` }, `Saved query: ${query.name}`);
    }
    const dashboard = await get(`/api/dashboards/${report.dashboard_id}`);
    return h("a", { href: `#/dashboards/${dashboard.id}` }, `Dashboard: ${dashboard.name}`);
  } catch {
    return h("span", { class: "muted" }, "Not visible to you");
  }
}

function historyFilters(query) {
  const status = select([["", "Any status"], ...STATES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])], { value: query.get("status") || "" });
  const trigger = select([["", "Any trigger"], ["schedule", "Scheduled"], ["manual", "Run now"], ["test", "Test"]], { value: query.get("trigger") || "" });
  const from = input({ type: "date", value: query.get("from") || "" });
  const to = input({ type: "date", value: query.get("to") || "" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the history" },
    field("Status", status, { name: "status" }),
    field("Trigger", trigger, { name: "trigger" }),
    field("From (date)", from, { name: "from" }),
    field("To (date, inclusive)", to, { name: "to" }),
    h("button", { type: "submit", class: "button secondary" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setQuery({ status: status.value, trigger: trigger.value, from: from.value, to: to.value, offset: null });
  });
  return form;
}

function historyTable(page, zone) {
  const columns = [
    { label: "Run", render: (e) => h("a", { href: `#/executions/${e.id}` }, time(e.scheduled_for || e.queued_at)) },
    { label: "Trigger", render: (e) => TRIGGER_WORDS[e.trigger] || e.trigger },
    { label: "Status", render: (e) => h("span", {}, badge(e.status), e.late ? h("span", { class: "muted" }, " late") : null) },
    { label: "Rows", render: (e) => (e.row_count ?? "—"), className: "number" },
    { label: "Took", render: (e) => duration(e.duration_ms) },
    { label: "Files", render: (e) => String((e.artifacts || []).length) },
    { label: "Problem", render: (e) => e.error || (e.deliveries || []).filter((d) => d.status === "failed").map((d) => `${d.target}: ${d.error || d.answer || "failed"}`).join("; ") || "—" },
  ];
  return h("div", {}, table("Runs of this report", columns, page.items, { empty: "No runs match." }), pager(page, "History pages"));
}

export async function reportPage(main, { id }, query) {
  const historyArgs = {
    status: query.get("status") || undefined,
    trigger: query.get("trigger") || undefined,
    from: query.get("from") || undefined,
    to: query.get("to") || undefined,
    limit: PAGE_SIZE,
    offset: Number(query.get("offset") || 0),
  };
  const [report, runs, history, names] = await Promise.all([
    get(`/api/scheduled-reports/${id}`),
    get(`/api/scheduled-reports/${id}/next-runs`, { count: 10 }),
    get(`/api/scheduled-reports/${id}/executions`, historyArgs),
    ownerNames(),
  ]);
  const zone = report.schedule.timezone;
  const historyBox = h("div", {}, historyTable(history, zone));
  const unfinished = (page) => !page.items.every((e) => TERMINAL.has(e.status));
  const refreshHistory = async () => {
    const fresh = await get(`/api/scheduled-reports/${id}/executions`, historyArgs);
    const hadFocus = historyBox.contains(document.activeElement);
    replace(historyBox, historyTable(fresh, zone));
    if (hadFocus) historyBox.querySelector("a")?.focus();
    return unfinished(fresh);
  };
  let looping = false;
  const startWatching = () => {
    if (looping) return;
    looping = true;
    poll(async () => {
      looping = await refreshHistory();
      return looping;
    }, 1500, historyBox);
  };

  const start = async (control, what) => {
    await busy(control, async () => {
      try {
        const accepted = await post(`/api/scheduled-reports/${id}/${what}`);
        announce(
          what === "run"
            ? "Run started for every recipient; its progress shows in the history below."
            : `Test run started; it goes to ${session.user.email} only, with [TEST] in the subject.`,
          "good",
        );
        historyBox.dataset.lastRun = accepted.execution_id;
        await refreshHistory();
        startWatching();
      } catch (error) {
        announce(error.message, "bad");
      }
    });
  };
  const writable = canWrite(report);
  const actions = [
    button("Run now", (event) => start(event.currentTarget, "run"), { kind: "primary" }),
    button("Send test to me", (event) => start(event.currentTarget, "test")),
    writable
      ? button(report.is_active ? "Pause" : "Resume", async (event) => {
          await busy(event.currentTarget, async () => {
            try {
              await patchOrPut(`/api/scheduled-reports/${id}`, { is_active: !report.is_active }, () => reportBody(report));
              announce(report.is_active ? "Paused: no scheduled runs until you resume it." : "Resumed.", "good");
              navigate(`/reports/${id}`);
            } catch (error) {
              announce(error.message, "bad");
            }
          });
        })
      : null,
    writable ? buttonLink("Edit", `#/reports/${id}/edit`, "secondary") : null,
    writable
      ? button("Delete", async () => {
          if (!confirmed(`Delete the report “${report.name}” with its whole history and files?`)) return;
          try {
            await del(`/api/scheduled-reports/${id}`);
            announce("Report deleted.", "good");
            navigate("/reports");
          } catch (error) {
            announce(error.message, "bad");
          }
        }, { kind: "danger" })
      : null,
  ];
  replace(
    main,
    h("p", {}, h("a", { href: "#/reports" }, "← All reports")),
    pageHead(report.name, activeBadge(report)),
    h("div", { class: "actions", role: "group", "aria-label": "Report actions" }, actions),
    summary([
      ["Schedule", scheduleWords(report.schedule)],
      ["Next run", report.is_active ? h("span", {}, time(report.next_run_at, zone), zone !== viewerZone ? [" · yours: ", time(report.next_run_at)] : null) : "Paused"],
      ["Last run", lastRun(report.last_execution)],
      ["Source", await sourceLink(report)],
      ["Sends to", h("ul", { class: "destinations" }, (report.destinations || []).map((d) => h("li", {}, destinationText(d))))],
      ["Files", report.formats.map((f) => f.toUpperCase()).join(", ")],
      ["Language and formats", report.locale],
      ["Subject", report.subject || h("span", { class: "muted" }, "Default: the report's name and date")],
      ["Owner", ownerText(report, names)],
      report.unsubscribed?.length ? ["Unsubscribed", report.unsubscribed.join(", ")] : null,
    ]),
    sectionHeading("Next 10 runs"),
    report.is_active ? null : h("p", { class: "muted" }, "Paused: these runs happen only once you resume the report."),
    nextRunsList(runs, zone),
    sectionHeading("History"),
    historyFilters(query),
    historyBox,
  );
  if (unfinished(history)) startWatching();
}

const VARIABLES = [
  ["{{report_name}}", "the report's name"],
  ["{{date}}", "the run's date in the report's time zone"],
  ["{{run_time}}", "the run's date and time"],
  ["{{row_count}}", "how many rows the query returned"],
  ["{{timezone}}", "the report's time zone"],
];

// The subject and body as a run would send them (POST …/preview-message, with sample values), refreshed
// 400 ms after the last change. A template the API refuses is marked on its own field, as a save marks it,
// without moving the focus from where the user is typing.
function messagePreview(read, subject, body) {
  const status = h("p", { class: "muted", role: "status" }, "Preparing the preview…");
  const subjectLine = h("dd", { class: "preview-subject" });
  const bodyBox = h("dd", { class: "preview-body" });
  const text = h("pre", { class: "preview-text" });
  const parts = h("dl", { class: "message-parts" }, h("dt", {}, "Subject line"), subjectLine, h("dt", {}, "Text above the data"), bodyBox);
  const plain = h("details", {}, h("summary", {}, "Plain-text part"), text);
  const show = (preview) => {
    parts.hidden = plain.hidden = !preview;
    subjectLine.textContent = preview ? preview.subject : "";
    replace(bodyBox, preview && (preview.html ? sanitisedFragment(preview.html) : h("span", { class: "empty" }, "None: the email starts with the data.")));
    text.textContent = preview ? preview.text : "";
  };
  let asked = 0;
  const refresh = debounce(async () => {
    const message = read();
    const ask = ++asked;
    if (!message.name) {
      show(null);
      status.textContent = "Give the report a name to see the preview.";
      return;
    }
    try {
      const preview = await post("/api/scheduled-reports/preview-message", message);
      if (ask !== asked) return; // a newer one is on its way
      fieldMessage(subject);
      fieldMessage(body);
      show(preview);
      const { row_count: rows, run_time: at } = preview.sample;
      status.textContent = `With sample values: a run at ${at} that found ${rows} rows.`;
    } catch (error) {
      if (ask !== asked) return;
      const fields = error.fields || {};
      fieldMessage(subject, fields.subject);
      fieldMessage(body, fields.body);
      show(null);
      const others = Object.entries(fields).filter(([key]) => key !== "subject" && key !== "body");
      status.textContent = fields.subject || fields.body
        ? "No preview: correct the message marked above."
        : `No preview: ${others.length ? others.map(([key, words]) => `${key}: ${words.join(" ")}`).join("; ") : error.message}`;
    }
  }, 400);
  const element = h("section", { class: "preview message-preview", "aria-label": "Preview of the message" }, h("h3", {}, "Preview"), status, parts, plain);
  show(null);
  return { element, refresh };
}

export async function reportEditor(main, { id }) {
  const [report, queries, dashboards] = await Promise.all([
    id ? get(`/api/scheduled-reports/${id}`) : null,
    all("/api/saved-queries"),
    all("/api/dashboards"),
  ]);
  const r = report || { formats: ["xlsx"], send_if_empty: true, is_active: true, locale: "en-US", csv_separator: "," };
  const name = input({ value: r.name || "", required: true, autocomplete: "off" });
  const description = h("textarea", { rows: 2 });
  description.value = r.description || "";

  const useDashboard = Boolean(r.dashboard_id);
  const queryChoice = radio("A saved query", { name: "source-kind", value: "query", checked: !useDashboard });
  const dashboardChoice = radio("A dashboard (one section per widget)", { name: "source-kind", value: "dashboard", checked: useDashboard });
  const querySelect = select([["", "Choose a saved query…"], ...queries.map((q) => [q.id, q.name])], { value: r.saved_query_id || "" });
  const dashboardSelect = select([["", "Choose a dashboard…"], ...dashboards.map((d) => [d.id, d.name])], { value: r.dashboard_id || "" });
  const queryField = field("Saved query", querySelect, { name: "saved_query_id" });
  const dashboardField = field("Dashboard", dashboardSelect, { name: "dashboard_id" });
  const showSource = () => {
    const dash = dashboardChoice.querySelector("input").checked;
    queryField.hidden = dash;
    dashboardField.hidden = !dash;
  };
  for (const choice of [queryChoice, dashboardChoice]) choice.querySelector("input").addEventListener("change", showSource);
  showSource();

  const schedule = scheduleBuilder(r.schedule);
  const destinations = destinationsEditor(r.destinations || []);
  const formats = ["xlsx", "csv", "pdf"].map((f) => checkbox({ xlsx: "Excel (XLSX)", csv: "CSV", pdf: "PDF" }[f], { value: f, checked: r.formats.includes(f) }));
  const locale = select(localeOptions(r.locale), { value: r.locale || "en-US" });
  const separator = select([[",", "Comma ,"], [";", "Semicolon ;"], ["|", "Bar |"], ["\t", "Tab"]], { value: r.csv_separator || "," });
  const bom = checkbox("Start CSV files with a byte order mark (for Excel on Windows)", { checked: r.csv_bom });
  const subject = input({ value: r.subject || "", placeholder: "{{report_name}} for {{date}}", autocomplete: "off" });
  const body = h("textarea", { rows: 5 });
  body.value = r.body || "";
  const messageFields = () => ({
    name: name.value.trim(),
    subject: subject.value.trim() || null,
    body: body.value.trim() ? body.value : null,
    locale: locale.value,
  });
  const preview = messagePreview(() => ({ ...messageFields(), timezone: schedule.read().timezone }), subject, body);
  for (const control of [name, subject, body]) control.addEventListener("input", preview.refresh);
  let zone = schedule.read().timezone;
  schedule.onChange((changed) => {
    if (changed.timezone === zone) return;
    zone = changed.timezone;
    preview.refresh();
  });
  const sendIfEmpty = checkbox("Send even when the query returns no rows", { checked: r.send_if_empty !== false });
  const onlyIfChanged = checkbox("Send only when the data changed since the last delivered run", { checked: r.send_only_if_changed });
  const active = checkbox("Active (runs on its schedule)", { checked: r.is_active !== false });
  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save report" : "Create report");

  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h("fieldset", {}, h("legend", {}, "What"), field("Name", name, { name: "name" }), field("Description", description, { name: "description" }),
      group("Send the result of", [queryChoice, dashboardChoice], { className: "source" }), queryField, dashboardField),
    h("fieldset", { dataset: { field: "schedule", errorId: "schedule-error" } }, h("legend", {}, "When"), schedule.element,
      h("p", { class: "field-error", id: "schedule-error", hidden: true })),
    h("fieldset", {}, h("legend", {}, "Who"), destinations.element),
    h("fieldset", {}, h("legend", {}, "Files"), group("Formats", formats, { name: "formats" }),
      h("div", { class: "two-columns" }, field("Language and number format", locale, { name: "locale", hint: "How numbers, dates and the email's own words read." }),
        field("CSV separator", separator, { name: "csv_separator" })), bom),
    h("fieldset", {}, h("legend", {}, "Message"),
      field("Subject", subject, { name: "subject" }),
      field("Text above the data", body, { name: "body" }),
      h("p", { class: "hint" }, "Both may use these variables:"),
      h("dl", { class: "variables" }, VARIABLES.map(([v, words]) => [h("dt", {}, v), h("dd", {}, words)])),
      preview.element),
    h("fieldset", {}, h("legend", {}, "Options"), h("div", { class: "choices" }, sendIfEmpty, onlyIfChanged, active)),
    h("div", { class: "form-actions" }, submit, buttonLink("Cancel", id ? `#/reports/${id}` : "#/reports", "secondary")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const dash = dashboardChoice.querySelector("input").checked;
    const payload = {
      ...messageFields(),
      description: description.value.trim() || null,
      saved_query_id: dash ? null : querySelect.value || null,
      dashboard_id: dash ? dashboardSelect.value || null : null,
      schedule: schedule.read(),
      destinations: destinations.read(),
      formats: formats.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
      csv_separator: separator.value,
      csv_bom: bom.querySelector("input").checked,
      send_if_empty: sendIfEmpty.querySelector("input").checked,
      send_only_if_changed: onlyIfChanged.querySelector("input").checked,
      is_active: active.querySelector("input").checked,
    };
    await busy(submit, async () => {
      try {
        const saved = id ? await put(`/api/scheduled-reports/${id}`, payload) : await post("/api/scheduled-reports", payload);
        const secrets = (saved.destinations || []).filter((d) => d.signing_secret);
        announce(secrets.length ? `Saved. Webhook signing secret (shown once): ${secrets.map((d) => d.signing_secret).join(", ")}` : "Report saved.", "good");
        navigate(`/reports/${saved.id}`);
      } catch (error) {
        showErrors(form, error, destinations.alias);
      }
    });
  });
  replace(
    main,
    h("p", {}, h("a", { href: id ? `#/reports/${id}` : "#/reports" }, id ? "← Back to the report" : "← All reports")),
    h("h1", {}, id ? `Edit “${r.name}”` : "New report"),
    queries.length || dashboards.length ? null : h("p", { class: "form-error" }, "There is no saved query or dashboard yet: create a saved query first."),
    form,
  );
  preview.refresh();
}

