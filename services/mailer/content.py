"""Building a run's or an alert event's `Notification` (and the email it becomes) from the database."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.orm import object_session

from services.mailer import report_mail
from services.mailer.branding import Branding
from services.mailer.compose import DownloadLink, MailContent, Preview, Unsubscribe, render_subject, render_user_body
from services.mailer.files import plan_files, read_preview
from services.mailer.notification import (
    ALERT_EVENTS,
    REPORT_DELIVERED,
    REPORT_FAILED,
    REPORT_TEST,
    FileLink,
    Notification,
    Section,
)
from shared import alerts, charts, links
from shared.context import WorkerContext
from shared.models import Alert, AlertEvent, Artifact, ReportExecution, ScheduledReport, User
from shared.templates import template_context

log = logging.getLogger(__name__)


def report_url(ctx: WorkerContext, report_id) -> str:
    """The report's page in the web console (its schedule, history and files; sign-in first if needed)."""
    return f"{ctx.settings.public_url}/#/reports/{report_id}"


def run_url(ctx: WorkerContext, execution_id) -> str:
    """One run's page in the web console: its timeline, the error in words, every delivery."""
    return f"{ctx.settings.public_url}/#/executions/{execution_id}"


def file_links(ctx: WorkerContext, artifacts: list[Artifact]) -> list[FileLink]:
    """Signed, expiring download links for every file of the run."""
    now = ctx.clock.now()
    found = []
    for artifact in artifacts:
        expires = links.link_expiry(ctx.settings, now=now, artifact_expires_at=artifact.expires_at)
        url = links.url_for(ctx.settings, links.sign(ctx.settings, artifact.id, expires_at=expires))
        found.append(FileLink(artifact.filename, artifact.format, artifact.size, url, expires))
    return found


def report_notification(
    ctx: WorkerContext,
    execution: ReportExecution,
    report: ScheduledReport,
    artifacts: list[Artifact],
    preview: Preview | None,
    subject: str,
) -> Notification:
    zone = report.timezone or "UTC"
    local = execution.scheduled_for.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    rows = execution.row_count or 0
    sections = summary_sections(execution.summary)
    if not sections:  # a run rendered before runs kept a summary: the first rows of its first file
        sections = (
            Section(
                title=report.name,
                row_count=rows,
                columns=tuple(preview.columns) if preview else (),
                rows=tuple(tuple(r) for r in preview.rows) if preview else (),
                truncated=bool(execution.truncated),
            ),
        )
    truncated = " (cut at the row limit)" if execution.truncated else ""
    return Notification(
        type=REPORT_TEST if execution.trigger == "test" else REPORT_DELIVERED,
        subject=subject,
        headline=f"{report.name} ran for {local}: {rows:,} rows{truncated}.",
        name=report.name,
        object_kind="report",
        object_id=str(report.id),
        run_id=str(execution.id),
        status="rendered",
        timezone=zone,
        scheduled_for=execution.scheduled_for,
        started_at=execution.started_at,
        finished_at=execution.rendered_at,
        row_count=rows,
        sections=sections,
        files=tuple(file_links(ctx, artifacts)),
        open_url=report_url(ctx, report.id),
        locale=getattr(report, "locale", None) or "en-US",
        owner=owner_name(report),
        description=report.description,
    )


MAX_CHART_IMAGES = 5


class ChartImages:
    """Draws each of a run's chart specs to PNG once, for the email and a Slack upload alike."""

    def __init__(self) -> None:
        self._drawn: dict[tuple[int, float], bytes] = {}

    def __call__(self, spec: dict, *, scale: float = 2.0) -> bytes:
        key = (id(spec), scale)  # the specs live in the run's Notification for as long as this does
        if key not in self._drawn:
            self._drawn[key] = charts.to_png(spec, scale=scale)
        return self._drawn[key]


def chart_pngs(notification: Notification, render=charts.to_png) -> tuple[bytes, ...]:
    """The run's charts as PNG (at most MAX_CHART_IMAGES), from the specs its render recorded."""
    pngs = []
    for section in notification.sections:
        for spec in section.charts:
            if len(pngs) >= MAX_CHART_IMAGES:
                return tuple(pngs)
            try:
                pngs.append(render(spec, scale=2.0))
            except Exception:
                log.warning("a chart of %r could not be drawn", section.title, exc_info=True)
    return tuple(pngs)


def summary_sections(summary) -> tuple[Section, ...]:
    """The sections a run's summary recorded at render time (each dashboard widget, in order)."""
    found = []
    for item in (summary or {}).get("sections", ()) if isinstance(summary, dict) else ():
        found.append(
            Section(
                title=item.get("title") or "",
                row_count=item.get("row_count"),
                columns=tuple(item.get("columns") or ()),
                rows=tuple(tuple(r) for r in item.get("rows") or ()),
                align=tuple(item.get("align") or ()),
                charts=tuple(item.get("charts") or ()),
                chart_alt=item.get("chart_alt") or "",
                truncated=bool(item.get("truncated")),
                filters=tuple(item.get("filters") or ()),
            )
        )
    return tuple(found)


def owner_name(report: ScheduledReport) -> str | None:
    """Who scheduled the report, as the footer names them: their name, else their address."""
    session = object_session(report)
    owner = session.get(User, report.owner_id) if session is not None else None
    return (owner.name or owner.email) if owner is not None else None


def failure_notification(ctx: WorkerContext, execution: ReportExecution, report: ScheduledReport) -> Notification:
    """What webhook and chat destinations hear when a run failed before anything could be sent."""
    zone = report.timezone or "UTC"
    local = execution.scheduled_for.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    attempts = f" after {execution.attempts} attempts" if (execution.attempts or 0) > 1 else ""
    return Notification(
        type=REPORT_FAILED,
        subject=f"Failed: {report.name} ({local})",
        headline=f"{report.name} could not run for {local}{attempts}; nothing was sent.",
        name=report.name,
        object_kind="report",
        object_id=str(report.id),
        run_id=str(execution.id),
        status="failed",
        timezone=zone,
        scheduled_for=execution.scheduled_for,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        open_url=run_url(ctx, execution.id),
        error=execution.error or "The run failed.",
    )


def report_email(
    ctx: WorkerContext,
    session,
    execution,
    report,
    artifacts,
    preview,
    subject,
    *,
    notification: Notification | None = None,
    render=charts.to_png,
) -> MailContent:
    """The email of a run (report_mail.py): every section with its charts and first rows, the files that
    fit attached and a signed link to each, and - except on a test run - each recipient's unsubscribe link.

    `notification` is the run's, when the caller has built it already; `render` draws a chart's PNG
    (a ChartImages shares them with the Slack upload)."""
    zone = ZoneInfo(report.timezone or "UTC")
    context = template_context(
        report.name, execution.scheduled_for.astimezone(zone), execution.row_count or 0, report.timezone
    )

    def read(artifact: Artifact):
        return ctx.store.open(session, artifact)

    plan = plan_files(artifacts, read, ctx.settings.max_attachment_bytes)
    notification = notification or report_notification(ctx, execution, report, artifacts, preview, subject)
    too_large = {artifact.id for artifact in plan.too_large}
    files = tuple(
        report_mail.EmailFile(link, attached=artifact.id not in too_large)
        for artifact, link in zip(artifacts, notification.files, strict=True)
    )
    download_links = tuple(
        DownloadLink(f.link.filename, f.link.url, f.link.size, f.link.expires_at) for f in files if not f.attached
    )
    test = execution.trigger == "test"
    email = report_mail.compose_report(
        notification,
        render_user_body(report.body, context),
        subject=subject,
        files=files,
        branding=Branding.from_settings(ctx.settings),
        unsubscribe=not test,
        cid_domain=urlsplit(ctx.settings.public_url).hostname or "biapp.invalid",
        render=render,
    )
    return MailContent(
        subject,
        email.text,
        email.html,
        tuple(plan.attachments),
        download_links,
        images=email.images,
        unsubscribe=None if test else Unsubscribe(ctx.settings, report.id),
    )


def report_subject_and_preview(ctx: WorkerContext, session, execution, report, artifacts):
    zone = ZoneInfo(report.timezone or "UTC")
    context = template_context(
        report.name, execution.scheduled_for.astimezone(zone), execution.row_count or 0, report.timezone
    )
    subject = render_subject(report.subject, context, test=execution.trigger == "test")

    def read(artifact: Artifact):
        return ctx.store.open(session, artifact)

    return subject, read_preview(artifacts, read, execution.row_count or 0)


def alert_notification(ctx: WorkerContext, alert: Alert, event: AlertEvent, subject: str) -> Notification:
    condition = alerts.parse_condition(alert.condition)
    reason = event.notify_reason or "triggered"
    headlines = {
        "triggered": f"The condition of {alert.name} is true.",
        "recovered": f"The condition of {alert.name} is no longer true.",
        "error": f"{alert.name} could not be evaluated.",
    }
    observed = "n/a" if event.state == "error" else alerts.json_value(event.observed)
    return Notification(
        type=ALERT_EVENTS.get(reason, ALERT_EVENTS["triggered"]),
        subject=subject,
        headline=headlines.get(reason, headlines["triggered"]),
        name=alert.name,
        object_kind="alert",
        object_id=str(alert.id),
        run_id=str(event.id),
        status=event.state,
        timezone=alert.timezone or "UTC",
        scheduled_for=event.scheduled_for,
        started_at=event.evaluated_at,
        finished_at=event.evaluated_at,
        row_count=event.row_count,
        open_url=f"{ctx.settings.public_url}/#/alerts/{alert.id}",
        error=event.error,
        facts=(
            ("Condition", alerts.describe(condition)),
            ("Observed", str(observed)),
            ("Result", event.message or event.state),
        ),
    )
