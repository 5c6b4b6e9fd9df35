// How the console writes times, schedules, states and sizes. A time is always shown with its zone.
import { h } from "./dom.js";

export const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const formatters = new Map();
function formatter(zone, withSeconds) {
  const key = `${zone}|${withSeconds}`;
  if (!formatters.has(key)) {
    formatters.set(
      key,
      new Intl.DateTimeFormat("en-GB", {
        timeZone: zone,
        weekday: "short",
        day: "numeric",
        month: "short",
        year: "numeric",
        hour: "2-digit",
        minute: "2-digit",
        second: withSeconds ? "2-digit" : undefined,
        hourCycle: "h23",
        timeZoneName: "short",
      }),
    );
  }
  return formatters.get(key);
}

export function timeText(iso, zone = viewerZone, { seconds = false } = {}) {
  if (!iso) return "—";
  return formatter(zone, seconds).format(new Date(iso)).replace(",", "");
}

// A <time> element: the time in `zone` (the viewer's by default) with its zone, UTC in the tooltip.
export function time(iso, zone = viewerZone, options = {}) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const moment = new Date(iso);
  return h(
    "time",
    { datetime: moment.toISOString(), title: `${moment.toISOString().replace(".000Z", "Z")} (UTC) · shown in ${zone}` },
    timeText(iso, zone, options),
  );
}

export const DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

function listWords(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function dayWords(days) {
  const sorted = [...new Set(days)].sort();
  if (sorted.length === 7) return "every day";
  if (sorted.join() === "0,1,2,3,4") return "Monday to Friday";
  if (sorted.join() === "5,6") return "Saturday and Sunday";
  return `every ${listWords(sorted.map((day) => DAY_NAMES[day]))}`;
}

function ordinal(n) {
  const suffix = n % 10 === 1 && n !== 11 ? "st" : n % 10 === 2 && n !== 12 ? "nd" : n % 10 === 3 && n !== 13 ? "rd" : "th";
  return `${n}${suffix}`;
}

// "Every Monday at 09:00 (Europe/Berlin)"
export function scheduleWords(schedule) {
  if (!schedule) return "—";
  const zone = schedule.timezone || "UTC";
  const at = schedule.time || "09:00";
  switch (schedule.frequency) {
    case "daily":
      return `Every day at ${at} (${zone})`;
    case "weekly":
      return `${capitalise(dayWords(schedule.days_of_week || []))} at ${at} (${zone})`;
    case "monthly":
      return schedule.day_of_month === -1 || schedule.day_of_month === null
        ? `On the last day of every month at ${at} (${zone})`
        : `On the ${ordinal(schedule.day_of_month)} of every month at ${at} (${zone})`;
    case "cron":
      return `${cronWords(schedule.cron)} (${zone})`;
    default:
      return "—";
  }
}

function cronWords(expression) {
  const parts = (expression || "").trim().split(/\s+/);
  if (parts.length === 5) {
    const [minute, hour, dom, month, dow] = parts;
    const rest = `${hour} ${dom} ${month} ${dow}`;
    if (rest === "* * * *" && minute === "*") return "Every minute";
    if (rest === "* * * *" && /^\*\/\d+$/.test(minute)) return `Every ${minute.slice(2)} minutes`;
    const at = /^\d+$/.test(minute) && /^\d+$/.test(hour) ? `${hour.padStart(2, "0")}:${minute.padStart(2, "0")}` : null;
    if (at && dom === "*" && month === "*") {
      if (dow === "*") return `Every day at ${at}`;
      if (dow === "1-5") return `Monday to Friday at ${at}`;
    }
  }
  return `Cron “${expression}”`;
}

export function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

const STATUS_WORDS = {
  queued: "Queued",
  running: "Running",
  rendered: "Rendered",
  sending: "Sending",
  success: "Success",
  partial: "Partly delivered",
  failed: "Failed",
  skipped: "Skipped",
  pending: "Pending",
  sent: "Sent",
  true: "Condition true",
  false: "Condition false",
  error: "Error",
};
const STATUS_TONE = {
  success: "good",
  sent: "good",
  false: "good",
  partial: "warn",
  skipped: "neutral",
  failed: "bad",
  error: "bad",
  true: "warn",
};

// A state in colour *and* words (colour alone tells nothing to many people).
export function badge(status, text) {
  if (!status) return h("span", { class: "badge neutral" }, text || "No runs yet");
  const tone = STATUS_TONE[status] || "busy";
  return h("span", { class: `badge ${tone}` }, text || STATUS_WORDS[status] || capitalise(status));
}

export const TERMINAL = new Set(["success", "partial", "failed", "skipped"]);

export function bytes(size) {
  if (size === null || size === undefined) return "—";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export const TRIGGER_WORDS = { schedule: "Scheduled", manual: "Run now", test: "Test", evaluate: "Evaluate now" };
