// Alerts: a condition on a saved query, checked on a schedule; each evaluation is an event with its deliveries.
import { all, get, patchOrPut, post, put } from "../api.js";
import { announce, busy, button, checkbox, clearErrors, field, formError, h, input, replace, select, showErrors, table } from "../dom.js";
import { PAGE_SIZE, destinationsEditor, nextRunsList, pageArgs, pager, scheduleBuilder, sectionHeading } from "../components.js";
import { TRIGGER_WORDS, badge, scheduleWords, time } from "../format.js";
import { navigate, poll, setQuery } from "../router.js";
import { canWrite } from "../session.js";
import { keptDestinations } from "./reports.js";
import { buttonLink, deleteButton, ownerNames, ownerText, pageHead, summary } from "./shared.js";

const OPS = [["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"], ["eq", "="], ["ne", "≠"]];
const OP_WORDS = { gt: "more than", gte: "at least", lt: "less than", lte: "at most", eq: "exactly", ne: "other than" };
const AGGREGATES = [["first", "First row's value"], ["min", "Minimum"], ["max", "Maximum"], ["sum", "Sum"], ["any", "Any row"], ["all", "Every row"]];

export function conditionWords(condition) {
  if (!condition) return "—";
  if (condition.kind === "row_count") return `Rows: ${OP_WORDS[condition.op] || condition.op} ${condition.value}`;
  const symbol = Object.fromEntries(OPS)[condition.op] || condition.op;
  return `${condition.aggregate || "first"}(${condition.column}) ${symbol} ${condition.value}`;
}

function stateBadge(alert) {
  if (!alert.last_state) return badge(null, "Not evaluated yet");
  return badge(alert.last_state);
}

export async function alertsPage(main, params, query) {
  const [page, names] = await Promise.all([get("/api/alerts", pageArgs(query)), ownerNames()]);
  const columns = [
    { label: "Name", render: (a) => h("a", { href: `#/alerts/${a.id}` }, a.name) },
    { label: "Condition", render: (a) => h("code", {}, conditionWords(a.condition)) },
    { label: "Checked", render: (a) => scheduleWords(a.schedule) },
    { label: "Last result", render: (a) => h("div", { class: "last-run" }, stateBadge(a), a.last_evaluated_at ? time(a.last_evaluated_at) : null) },
    { label: "Next check", render: (a) => (a.is_active ? time(a.next_run_at) : h("span", { class: "muted" }, "Paused")) },
    { label: "Owner", render: (a) => ownerText(a, names) },
  ];
  replace(
    main,
    pageHead("Alerts", buttonLink("New alert", "#/alerts/new")),
    table("Alerts", columns, page.items, { empty: "No alerts yet. An alert emails people when a query's result meets a condition." }),
    pager(page, "Alert pages"),
  );
}

function alertBody(alert) {
  return {
    name: alert.name,
    description: alert.description,
    saved_query_id: alert.saved_query_id,
    condition: alert.condition,
    schedule: alert.schedule,
    destinations: keptDestinations(alert.destinations || []),
    notify: alert.notify,
    notify_on_recovery: alert.notify_on_recovery,
    notify_on_error: alert.notify_on_error,
    is_active: alert.is_active,
  };
}

function eventsTable(page) {
  const columns = [
    { label: "Checked", render: (e) => time(e.evaluated_at || e.queued_at) },
    { label: "Trigger", render: (e) => TRIGGER_WORDS[e.trigger] || e.trigger },
    { label: "Result", render: (e) => badge(e.state) },
    { label: "Observed", render: (e) => (e.observed === null || e.observed === undefined ? "—" : String(e.observed)) },
    { label: "Message", render: (e) => e.error || e.message || "—" },
    {
      label: "Notified",
      render: (e) =>
        e.notified
          ? (e.deliveries || []).map((d) => h("div", {}, `${d.target}: `, badge(d.status), d.answer ? h("span", { class: "answer" }, ` ${d.answer}`) : null))
          : e.notify_reason || "No",
    },
  ];
  return h("div", {}, table("Evaluations of this alert", columns, page.items, { empty: "No evaluations yet." }), pager(page, "Event pages"));
}

export async function alertPage(main, { id }, query) {
  const eventArgs = { state: query.get("state") || undefined, trigger: query.get("trigger") || undefined, limit: PAGE_SIZE, offset: Number(query.get("offset") || 0) };
  const [alert, events, names] = await Promise.all([get(`/api/alerts/${id}`), get(`/api/alerts/${id}/events`, eventArgs), ownerNames()]);
  const runs = await post("/api/schedules/next-runs", { schedule: alert.schedule, count: 5 }).catch(() => []);
  const box = h("div", {}, eventsTable(events));
  const pending = (page) => page.items.some((e) => e.state === "pending" || (e.deliveries || []).some((d) => d.status === "pending"));
  let watching = false;
  const watch = () => {
    if (watching) return;
    watching = true;
    poll(async () => {
      const fresh = await get(`/api/alerts/${id}/events`, eventArgs);
      replace(box, eventsTable(fresh));
      watching = pending(fresh);
      return watching;
    }, 1500, box);
  };
  const writable = canWrite(alert);
  const state = select([["", "Any result"], ["true", "Condition true"], ["false", "Condition false"], ["error", "Error"], ["pending", "Pending"]], { value: eventArgs.state || "" });
  const trigger = select([["", "Any trigger"], ["schedule", "Scheduled"], ["manual", "Evaluate now"]], { value: eventArgs.trigger || "" });
  const filters = h("form", { class: "filters", "aria-label": "Filter the events" }, field("Result", state), field("Trigger", trigger), h("button", { type: "submit", class: "button secondary" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    setQuery({ state: state.value, trigger: trigger.value, offset: null });
  });
  replace(
    main,
    h("p", {}, h("a", { href: "#/alerts" }, "← All alerts")),
    pageHead(alert.name, alert.is_active ? badge("success", "Active") : badge("skipped", "Paused")),
    h(
      "div",
      { class: "actions", role: "group", "aria-label": "Alert actions" },
      button("Evaluate now", async (event) => {
        await busy(event.currentTarget, async () => {
          try {
            await post(`/api/alerts/${id}/evaluate`);
            announce("Evaluation started; the result shows below.", "good");
            watch();
          } catch (error) {
            announce(error.message, "bad");
          }
        });
      }, { kind: "primary" }),
      writable
        ? button(alert.is_active ? "Pause" : "Resume", async () => {
            try {
              await patchOrPut(`/api/alerts/${id}`, { is_active: !alert.is_active }, () => alertBody(alert));
              navigate(`/alerts/${id}`);
            } catch (error) {
              announce(error.message, "bad");
            }
          })
        : null,
      writable ? buttonLink("Edit", `#/alerts/${id}/edit`, "secondary") : null,
      writable
        ? deleteButton(`Delete the alert “${alert.name}” and its history?`, `/api/alerts/${id}`, "/alerts")
        : null,
    ),
    summary([
      ["Condition", h("code", {}, conditionWords(alert.condition))],
      ["Checked", scheduleWords(alert.schedule)],
      ["Last result", h("span", {}, stateBadge(alert), " ", alert.last_evaluated_at ? time(alert.last_evaluated_at) : "")],
      ["Emails", alert.notify === "always" ? "Every time the condition is true" : "When the condition turns true"],
      ["Also", [alert.notify_on_recovery ? "when it turns false again" : null, alert.notify_on_error ? "when the query fails" : null].filter(Boolean).join("; ") || "—"],
      ["Sends to", (alert.destinations || []).map((d) => d.target).join(", ")],
      ["Owner", ownerText(alert, names)],
    ]),
    sectionHeading("Next checks"),
    nextRunsList(runs, alert.schedule.timezone),
    sectionHeading("Events"),
    filters,
    box,
  );
  if (pending(events)) watch();
}

export async function alertEditor(main, { id }) {
  const [alert, queries] = await Promise.all([id ? get(`/api/alerts/${id}`) : null, all("/api/saved-queries")]);
  const a = alert || { condition: { kind: "row_count", op: "gt", value: 0 }, notify: "on_change", is_active: true };
  const name = input({ value: a.name || "", autocomplete: "off", required: true });
  const query = select([["", "Choose a saved query…"], ...queries.map((q) => [q.id, q.name])], { value: a.saved_query_id || "" });
  const kind = select([["row_count", "The number of rows"], ["value", "A column's value"]], { value: a.condition.kind });
  const column = input({ value: a.condition.column || "", autocomplete: "off" });
  const aggregate = select(AGGREGATES, { value: a.condition.aggregate || "first" });
  const op = select(OPS.map(([value, symbol]) => [value, `${symbol} (${OP_WORDS[value]})`]), { value: a.condition.op });
  const value = input({ value: a.condition.value ?? "", autocomplete: "off" });
  const columnFields = h("div", { class: "two-columns" }, field("Column", column, { name: "condition.column" }), field("Of the rows, take", aggregate, { name: "condition.aggregate" }));
  const showKind = () => { columnFields.hidden = kind.value !== "value"; };
  kind.addEventListener("change", showKind);
  showKind();
  const schedule = scheduleBuilder(a.schedule || { frequency: "cron", cron: "*/15 * * * *" });
  const destinations = destinationsEditor(a.destinations || []);
  const notify = select([["on_change", "When the condition turns true"], ["always", "Every time it is true"]], { value: a.notify });
  const recovery = checkbox("Also when it turns false again", { checked: a.notify_on_recovery });
  const onError = checkbox("Also when the query fails", { checked: a.notify_on_error });
  const active = checkbox("Active (checked on its schedule)", { checked: a.is_active !== false });
  const submit = h("button", { type: "submit", class: "button primary" }, id ? "Save alert" : "Create alert");
  const form = h(
    "form",
    { novalidate: true },
    formError(),
    h("fieldset", {}, h("legend", {}, "Watch"), field("Name", name, { name: "name" }), field("Saved query", query, { name: "saved_query_id" })),
    h(
      "fieldset",
      { dataset: { field: "condition", errorId: "condition-error" } },
      h("legend", {}, "Condition"),
      field("Look at", kind, { name: "condition.kind" }),
      columnFields,
      h("div", { class: "two-columns" }, field("Compare", op, { name: "condition.op" }), field("With", value, { name: "condition.value", hint: "A number, or text / an ISO date for text and date columns." })),
      h("p", { class: "field-error", id: "condition-error", hidden: true }),
    ),
    h("fieldset", { dataset: { field: "schedule", errorId: "alert-schedule-error" } }, h("legend", {}, "When to check"), schedule.element, h("p", { class: "field-error", id: "alert-schedule-error", hidden: true })),
    h("fieldset", {}, h("legend", {}, "Who to tell"), destinations.element, field("Email", notify, { name: "notify" }), h("div", { class: "choices" }, recovery, onError, active)),
    h("div", { class: "form-actions" }, submit, buttonLink("Cancel", id ? `#/alerts/${id}` : "#/alerts", "secondary")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const raw = value.value.trim();
    const condition = { kind: kind.value, op: op.value, value: raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw };
    if (kind.value === "value") Object.assign(condition, { column: column.value.trim(), aggregate: aggregate.value });
    const payload = {
      name: name.value.trim(),
      saved_query_id: query.value || null,
      condition,
      schedule: schedule.read(),
      destinations: destinations.read(),
      notify: notify.value,
      notify_on_recovery: recovery.querySelector("input").checked,
      notify_on_error: onError.querySelector("input").checked,
      is_active: active.querySelector("input").checked,
    };
    await busy(submit, async () => {
      try {
        const saved = id ? await put(`/api/alerts/${id}`, payload) : await post("/api/alerts", payload);
        announce("Alert saved.", "good");
        navigate(`/alerts/${saved.id}`);
      } catch (error) {
        showErrors(form, error, destinations.alias);
      }
    });
  });
  replace(main, h("p", {}, h("a", { href: id ? `#/alerts/${id}` : "#/alerts" }, id ? "← Back to the alert" : "← All alerts")), h("h1", {}, alert ? `Edit “${alert.name}”` : "New alert"), form);
}
