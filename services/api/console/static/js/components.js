// Pieces several pages share: the pager, the schedule builder with its live preview, destinations.
import { post } from "./api.js";
import { button, checkbox, field, group, h, input, replace, select, uniqueId } from "./dom.js";
import { DAY_NAMES, time, timeText, viewerZone } from "./format.js";
import { setQuery } from "./router.js";

export const PAGE_SIZE = 20;

// "Showing 21–40 of 95" with previous / next; the offset lives in the URL so Back works.
export function pager(page, label = "Pages") {
  const { total, offset, limit } = page;
  if (total <= limit && offset === 0) return h("p", { class: "muted pager-summary" }, total === 1 ? "1 item" : `${total} items`);
  const last = Math.min(offset + limit, total);
  return h(
    "nav",
    { class: "pager", "aria-label": label },
    h("p", { class: "muted" }, `Showing ${total ? offset + 1 : 0}–${last} of ${total}`),
    button("Previous", () => setQuery({ offset: Math.max(0, offset - limit) || null }), { disabled: offset === 0 }),
    button("Next", () => setQuery({ offset: offset + limit }), { disabled: last >= total }),
  );
}

export function pageArgs(query) {
  return { limit: PAGE_SIZE, offset: Number(query.get("offset") || 0) };
}

function zones() {
  let names = [];
  try {
    names = Intl.supportedValuesOf("timeZone");
  } catch {
    names = [viewerZone];
  }
  const all = new Set(["UTC", ...names, viewerZone]);
  return [...all].sort((a, b) => (a === "UTC" ? -1 : b === "UTC" ? 1 : a.localeCompare(b)));
}

// Calls fn once `ms` after the last of a burst of calls (typing), with that last call's arguments.
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// Frequency, time, days, day of month, cron and time zone, with the next 10 runs as the API computes
// them (daylight-saving gaps and folds included). Field names match the API's: schedule.time, …
export function scheduleBuilder(initial = {}) {
  const value = {
    frequency: "daily",
    time: "09:00",
    days_of_week: [0],
    day_of_month: 1,
    cron: "0 8 * * 1-5",
    timezone: viewerZone,
    ...initial,
  };
  const frequency = select(
    [
      ["daily", "Daily"],
      ["weekly", "Weekly"],
      ["monthly", "Monthly"],
      ["cron", "Cron expression"],
    ],
    { value: value.frequency },
  );
  const at = input({ type: "time", value: value.time || "09:00", required: true, step: 60 });
  const days = DAY_NAMES.map((name, index) =>
    checkbox(name, { value: String(index), checked: (value.days_of_week || []).includes(index), name: uniqueId("dow") }),
  );
  const dayOfMonth = select(
    [...Array.from({ length: 31 }, (_, i) => [String(i + 1), String(i + 1)]), ["-1", "Last day of the month"]],
    { value: String(value.day_of_month ?? 1) },
  );
  const cron = input({ value: value.cron || "", spellcheck: "false", autocomplete: "off", class: "mono" });
  const zone = select(zones(), { value: value.timezone || "UTC" });

  const timeField = field("Time of day", at, { name: "schedule.time", hint: "Local time in the time zone below." });
  const daysField = group("Days of the week", days, { name: "schedule.days_of_week", className: "days" });
  const domField = field("Day of the month", dayOfMonth, {
    name: "schedule.day_of_month",
    hint: "Days past a month's end run on its last day.",
  });
  const cronField = field("Cron expression", cron, {
    name: "schedule.cron",
    hint: "minute hour day-of-month month day-of-week, in the time zone below; e.g. 0 8 * * 1-5",
  });
  const runs = h("ol", { class: "next-runs" });
  const runsStatus = h("p", { class: "muted", role: "status" }, "Working out the next runs…");
  const listeners = [];

  const read = () => {
    const schedule = { frequency: frequency.value, timezone: zone.value };
    if (frequency.value !== "cron") schedule.time = at.value;
    if (frequency.value === "weekly") {
      schedule.days_of_week = days.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => Number(box.value));
    }
    if (frequency.value === "monthly") schedule.day_of_month = Number(dayOfMonth.value);
    if (frequency.value === "cron") schedule.cron = cron.value.trim();
    return schedule;
  };

  const show = () => {
    const kind = frequency.value;
    timeField.hidden = kind === "cron";
    daysField.hidden = kind !== "weekly";
    domField.hidden = kind !== "monthly";
    cronField.hidden = kind !== "cron";
  };

  const refresh = debounce(async () => {
    const schedule = read();
    runsStatus.textContent = "Working out the next runs…";
    try {
      const upcoming = await post("/api/schedules/next-runs", { schedule, count: 10 });
      for (const slot of element.querySelectorAll(".field-error")) slot.hidden = true;
      replace(runs, upcoming.map((run) => nextRunItem(run, schedule.timezone)));
      const notes = upcoming.filter((run) => run.dst).length;
      runsStatus.textContent = notes
        ? `${notes} of these runs move because of a daylight-saving change (marked below).`
        : "Times in the schedule's time zone; yours in brackets when it differs.";
    } catch (error) {
      replace(runs);
      const messages = Object.values(error.fields || {}).flat();
      runsStatus.textContent = messages.length ? `No preview: ${messages.join(" ")}` : `No preview: ${error.message}`;
    }
  }, 250);

  const changed = () => {
    show();
    refresh();
    for (const listener of listeners) listener(read());
  };
  for (const control of [frequency, at, dayOfMonth, cron, zone, ...days.map((label) => label.querySelector("input"))]) {
    control.addEventListener("input", changed);
    control.addEventListener("change", changed);
  }

  const element = h(
    "div",
    { class: "schedule-builder" },
    h(
      "div",
      { class: "schedule-fields" },
      field("Frequency", frequency, { name: "schedule.frequency" }),
      timeField,
      daysField,
      domField,
      cronField,
      field("Time zone", zone, { name: "schedule.timezone", hint: `Your browser's zone is ${viewerZone}.` }),
    ),
    h("section", { class: "preview", "aria-label": "Next 10 runs" }, h("h3", {}, "Next 10 runs"), runsStatus, runs),
  );
  show();
  refresh();
  return { element, read, onChange: (listener) => listeners.push(listener) };
}

export function nextRunItem(run, zone) {
  const local = timeText(run.at_utc, zone);
  const mine = zone !== viewerZone ? ` (${timeText(run.at_utc, viewerZone)})` : "";
  return h(
    "li",
    { class: run.dst ? "dst" : null },
    h("time", { datetime: run.at_utc, title: `${run.at_utc} (UTC)` }, local + mine),
    run.dst ? h("span", { class: "badge warn" }, run.dst === "gap" ? "DST gap" : "DST fold") : null,
    run.note ? h("span", { class: "note" }, run.note) : null,
  );
}

export function nextRunsList(runs, zone) {
  return h("ol", { class: "next-runs" }, runs.map((run) => nextRunItem(run, zone)));
}

const SECRET_KINDS = { webhook: "Webhook", slack: "Slack", teams: "Microsoft Teams" };

// Email recipients (To and Cc, one address per line) plus webhook, Slack and Teams destinations.
// Existing destinations are kept by id (their URLs are secrets the API never shows again).
export function destinationsEditor(existing = []) {
  const emails = existing.filter((d) => d.kind === "email");
  const to = h("textarea", { rows: 3, autocomplete: "off", spellcheck: "false" });
  to.value = emails.filter((d) => d.role !== "cc").map((d) => d.address || d.target).join("\n");
  const cc = h("textarea", { rows: 2, autocomplete: "off", spellcheck: "false" });
  cc.value = emails.filter((d) => d.role === "cc").map((d) => d.address || d.target).join("\n");
  const others = existing.filter((d) => d.kind !== "email").map((d) => ({ ...d }));
  const otherList = h("ul", { class: "destinations" });
  const kind = select([["webhook", "Webhook"], ["slack", "Slack"], ["teams", "Microsoft Teams"]]);
  const url = input({ type: "url", placeholder: "https://…", autocomplete: "off" });
  const addButton = button("Add destination", () => {
    if (!url.value.trim()) {
      url.focus();
      return;
    }
    const item = { kind: kind.value };
    item[kind.value === "webhook" ? "url" : "webhook_url"] = url.value.trim();
    item.target = url.value.trim().replace(/^https?:\/\//, "").split("/")[0];
    others.push(item);
    url.value = "";
    drawOthers();
  });
  const drawOthers = () => {
    replace(
      otherList,
      others.map((item, index) =>
        h(
          "li",
          { dataset: { field: `other.${index}`, errorId: `other-${index}-error` } },
          h("span", {}, `${SECRET_KINDS[item.kind] || item.kind}: ${item.target || ""}${item.channel ? ` #${item.channel}` : ""}`),
          item.id ? h("span", { class: "muted" }, " (saved)") : h("span", { class: "muted" }, " (new)"),
          button("Remove", () => {
            others.splice(index, 1);
            drawOthers();
          }, { kind: "link", "aria-label": `Remove ${SECRET_KINDS[item.kind] || item.kind} destination ${item.target || ""}` }),
          h("p", { class: "field-error", id: `other-${index}-error`, hidden: true }),
        ),
      ),
    );
  };
  drawOthers();

  const addresses = (text) => text.split(/[\n,;]+/).map((a) => a.trim()).filter(Boolean);
  let layout = [];
  const read = () => {
    const toAddresses = addresses(to.value);
    const ccAddresses = addresses(cc.value);
    const keep = (address) => emails.find((d) => (d.address || d.target || "").toLowerCase() === address.toLowerCase());
    const list = [];
    layout = [];
    for (const [role, items] of [["to", toAddresses], ["cc", ccAddresses]]) {
      for (const address of items) {
        const known = keep(address);
        list.push({ kind: "email", address, role, ...(known && known.role === role ? { id: known.id } : {}) });
        layout.push(role);
      }
    }
    others.forEach((item, index) => {
      const body = { kind: item.kind };
      for (const key of ["id", "url", "webhook_url", "bot_token", "channel"]) if (item[key]) body[key] = item[key];
      list.push(body);
      layout.push(`other.${index}`);
    });
    return list;
  };
  // "destinations.3.address" → the To or Cc box, or the listed destination, that holds item 3.
  const alias = (key) => {
    const match = /^destinations\.(\d+)/.exec(key);
    if (!match) return key === "recipients" || key === "cc" ? "destinations" : key;
    const where = layout[Number(match[1])];
    return where === "to" ? "destinations.to" : where === "cc" ? "destinations.cc" : where || "destinations";
  };
  const element = h(
    "div",
    { class: "destinations-editor", dataset: { field: "destinations", errorId: "destinations-error" } },
    field("To", to, { name: "destinations.to", hint: "Email addresses, one per line. Each recipient gets a copy of their own." }),
    field("Cc", cc, { name: "destinations.cc", hint: "Optional; shown as Cc in each copy." }),
    h("h3", {}, "Webhooks, Slack and Teams"),
    otherList,
    h("div", { class: "inline-fields" }, field("Kind", kind), field("URL", url, { hint: "Stored encrypted; never shown again." }), addButton),
    h("p", { class: "field-error", id: "destinations-error", hidden: true }),
  );
  return { element, read, alias };
}

export function sectionHeading(text, ...actions) {
  return h("div", { class: "section-head" }, h("h2", {}, text), actions.length ? h("div", { class: "actions" }, actions) : null);
}

export { time };
