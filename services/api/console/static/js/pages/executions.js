// One run of a report: its timeline, the error in words, each destination's answer and the files.
import { get } from "../api.js";
import { announce, h, replace, table } from "../dom.js";
import { TERMINAL, TRIGGER_WORDS, badge, bytes, duration, time } from "../format.js";
import { poll } from "../router.js";
import { summary } from "./shared.js";

const STEPS = [
  ["queued", "Queued", "queued_at"],
  ["running", "Running", "started_at"],
  ["rendered", "Rendered", "rendered_at"],
  ["sending", "Sending", "sending_at"],
];
const ORDER = ["queued", "running", "rendered", "sending"];

const RESULT_WORDS = {
  success: "Every destination got it.",
  partial: "The files were made, but not every destination was reached (see below).",
  failed: "Nothing was sent.",
  skipped: "Nothing needed sending.",
};

function timeline(execution, zone) {
  const reached = ORDER.indexOf(execution.status);
  const finished = TERMINAL.has(execution.status);
  const items = STEPS.map(([state, label, key], index) => {
    const at = execution[key];
    let tone = "";
    let words = "not reached";
    if (at) {
      tone = "done";
      words = "";
    } else if (!finished && index === reached) {
      tone = "current";
      words = "in progress";
    } else if (finished && execution.status === "failed" && index > 0 && !at && execution[STEPS[index - 1][2]]) {
      tone = "failed";
      words = "failed here";
    } else if (finished && execution.status === "skipped" && !at) {
      words = "not needed";
    }
    if (!finished && index === reached && at) tone = "current";
    return h(
      "li",
      { class: tone },
      h("span", { class: "step" }, label),
      at ? time(at, zone, { seconds: true }) : null,
      words ? h("span", { class: "state" }, words) : null,
    );
  });
  items.push(
    h(
      "li",
      { class: finished ? (execution.status === "failed" ? "failed" : "done") : "" },
      h("span", { class: "step" }, "Result"),
      finished ? [badge(execution.status), " ", time(execution.finished_at, zone, { seconds: true })] : h("span", { class: "state" }, "waiting"),
    ),
  );
  return h("ol", { class: "timeline", "aria-label": "Timeline of this run" }, items);
}

function deliveries(execution, zone) {
  const columns = [
    { label: "Destination", render: (d) => `${d.kind === "email" ? (d.role === "cc" ? "Cc" : "To") : d.kind}: ${d.target}` },
    { label: "Status", render: (d) => badge(d.status) },
    { label: "Attempts", render: (d) => String(d.attempts ?? 0), className: "number" },
    { label: "Server's answer", render: (d) => h("span", { class: "answer" }, d.error ? `${d.error}${d.answer ? ` — ${d.answer}` : ""}` : d.answer || "—") },
    {
      label: "When",
      render: (d) => (d.sent_at ? time(d.sent_at, zone) : d.next_attempt_at ? h("span", {}, "next try ", time(d.next_attempt_at, zone)) : "—"),
    },
  ];
  return table("Deliveries", columns, execution.deliveries || [], { empty: "No deliveries yet." });
}

function files(execution) {
  const artifacts = execution.artifacts || [];
  if (!artifacts.length) {
    return h("p", { class: "empty" }, TERMINAL.has(execution.status) ? "No files (none were made, or they have expired)." : "The files appear here once rendered.");
  }
  return h(
    "ul",
    { class: "files" },
    artifacts.map((a) =>
      h(
        "li",
        {},
        h("a", { href: a.download_url || `/api/executions/${execution.id}/artifacts/${a.id}`, download: a.filename }, `Download ${a.filename}`),
        h("span", { class: "muted" }, `${a.format.toUpperCase()} · ${bytes(a.size)}`),
        h("span", { class: "muted mono", title: `SHA-256 ${a.sha256}` }, `sha256 ${String(a.sha256).slice(0, 12)}…`),
        a.expires_at ? h("span", { class: "muted" }, "kept until ", time(a.expires_at)) : null,
      ),
    ),
  );
}

export async function executionPage(main, { id }) {
  let execution = await get(`/api/executions/${id}`);
  let report = null;
  try {
    report = await get(`/api/scheduled-reports/${execution.report_id}`);
  } catch {
    report = null;
  }
  const zone = report?.schedule?.timezone;
  const body = h("div", {});
  const draw = () => {
    replace(
      body,
      summary([
        ["Status", badge(execution.status)],
        ["Trigger", TRIGGER_WORDS[execution.trigger] || execution.trigger],
        ["Scheduled for", h("span", {}, time(execution.scheduled_for, zone), execution.late ? " (late: the system was down when it was due)" : "")],
        ["Rows", execution.row_count === null || execution.row_count === undefined ? "—" : `${execution.row_count}${execution.truncated ? " (cut at the row limit)" : ""}`],
        ["Took", duration(execution.duration_ms)],
        ["Attempts", String(execution.attempts ?? 0)],
      ]),
      timeline(execution, zone),
      execution.error
        ? h("div", { class: "error-words", role: "note" }, h("strong", {}, "What went wrong: "), execution.error)
        : TERMINAL.has(execution.status)
          ? h("p", {}, RESULT_WORDS[execution.status] || "")
          : null,
      h("h2", {}, "Deliveries"),
      deliveries(execution, zone),
      h("h2", {}, "Files"),
      files(execution),
    );
  };
  const unfinished = () => !TERMINAL.has(execution.status) || (execution.deliveries || []).some((d) => d.status === "pending");
  draw();
  replace(
    main,
    h("p", {}, report ? h("a", { href: `#/reports/${report.id}` }, `← ${report.name}`) : h("a", { href: "#/reports" }, "← All reports")),
    h("h1", {}, report ? `Run of “${report.name}”` : "Run"),
    zone ? h("p", { class: "muted" }, `Times in the report's time zone, ${zone}.`) : null,
    body,
  );
  if (unfinished()) {
    poll(async () => {
      const before = execution.status;
      execution = await get(`/api/executions/${id}`);
      draw();
      if (execution.status !== before) announce(`The run is now: ${execution.status}.`, TERMINAL.has(execution.status) ? "good" : "info");
      return unfinished();
    }, 1500, body);
  }
}
