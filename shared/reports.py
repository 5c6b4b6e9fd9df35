"""Scheduled report rules that do not depend on HTTP: sources, schedules, summaries."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared import executions
from shared.errors import FieldError
from shared.models import Artifact, Dashboard, ReportExecution, SavedQuery, ScheduledReport, User
from shared.schedule_notes import describe_runs
from shared.schedules import next_run, parse_schedule, upcoming
from shared.storage import ArtifactStore
from shared.templates import check_template


def _readable(obj, user: User) -> bool:
    return obj is not None and (user.role == "admin" or obj.owner_id == user.id or obj.shared)


def check_source(session: Session, user: User, data: dict) -> None:
    """The report's query or dashboard must exist and be visible to its owner; its templates must render."""
    check_template(data.get("subject"), "subject")
    check_template(data.get("body"), "body")
    if data.get("saved_query_id"):
        if not _readable(session.get(SavedQuery, data["saved_query_id"]), user):
            raise FieldError("saved_query_id", "no such saved query")
    if data.get("dashboard_id"):
        if not _readable(session.get(Dashboard, data["dashboard_id"]), user):
            raise FieldError("dashboard_id", "no such dashboard")


def compute_next_run(report: ScheduledReport, now: datetime) -> datetime | None:
    if not report.is_active:
        return None
    return next_run(parse_schedule(report.schedule), now)


def apply_changes(report: ScheduledReport, data: dict, now: datetime) -> None:
    """Copy validated fields; a schedule edit or re-activation recomputes next_run_at from now."""
    schedule_changed = "schedule" in data and data["schedule"] != report.schedule
    reactivated = data.get("is_active") is True and not report.is_active
    for key, value in data.items():
        setattr(report, key, value)
    report.timezone = report.schedule.get("timezone") or "UTC"
    if not report.is_active:
        report.next_run_at = None
    elif schedule_changed or reactivated or report.next_run_at is None:
        report.next_run_at = compute_next_run(report, now)


def update_report(session: Session, report: ScheduledReport, data: dict, now: datetime) -> int:
    """Apply an edit; pausing the report also cancels its scheduled runs not yet started. Returns how many."""
    was_active = report.is_active
    apply_changes(report, data, now)
    if was_active and not report.is_active:
        return executions.cancel_unstarted(
            session, report.id, now=now, reason="The report was paused before this run started."
        )
    return 0


# The order of every execution history: newest first, the id breaking ties (a keyset cursor's key).
HISTORY_ORDER = (ReportExecution.queued_at.desc(), ReportExecution.id.desc())


# What a report's summary shows of its newest run (ExecutionSummarySchema).
SUMMARY_COLUMNS = (
    ReportExecution.report_id,
    ReportExecution.id,
    ReportExecution.status,
    ReportExecution.trigger,
    ReportExecution.scheduled_for,
    ReportExecution.queued_at,
    ReportExecution.finished_at,
    ReportExecution.error,
)


def last_executions(session: Session, report_ids: list) -> dict:
    """The newest execution of each report (as a row of SUMMARY_COLUMNS), in one query.

    For each report, one step down the (report_id, queued_at, id) index read backwards (LIMIT 1 per report,
    a LATERAL join on PostgreSQL), so 50 reports cost 50 index probes however long their histories are.
    """
    if not report_ids:
        return {}
    newest = (
        sa.select(*SUMMARY_COLUMNS)
        .where(ReportExecution.report_id == ScheduledReport.id)
        .order_by(*HISTORY_ORDER)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        newest = newest.lateral("newest")
        query = sa.select(newest).select_from(ScheduledReport).join(newest, sa.true())
        query = query.where(ScheduledReport.id.in_(report_ids))
    else:  # SQLite has no LATERAL: the newest id of each report, then those rows
        ids = sa.select(newest.with_only_columns(ReportExecution.id).scalar_subquery())
        ids = ids.where(ScheduledReport.id.in_(report_ids))
        query = sa.select(*SUMMARY_COLUMNS).where(ReportExecution.id.in_(ids))
    return {row.report_id: row for row in session.execute(query)}


def upcoming_runs(report: ScheduledReport, now: datetime, count: int) -> list[dict]:
    """The next `count` runs from now, in UTC and in the report's own zone (paused reports too)."""
    schedule = parse_schedule(report.schedule)
    return describe_runs(schedule, upcoming(schedule, now, count))


def history_query(report_id=None, *, status=None, trigger=None, since=None, until=None) -> sa.Select:
    """Executions newest first (of one report, or of all when `report_id` is None), filtered; `until` is exclusive."""
    query = sa.select(ReportExecution)
    if report_id is not None:
        query = query.where(ReportExecution.report_id == report_id)
    if status:
        query = query.where(ReportExecution.status.in_(status))
    if trigger:
        query = query.where(ReportExecution.trigger.in_(trigger))
    if since is not None:
        query = query.where(ReportExecution.queued_at >= since)
    if until is not None:
        query = query.where(ReportExecution.queued_at < until)
    return query.order_by(*HISTORY_ORDER)


def delete_artifact_files(session: Session, store: ArtifactStore, execution_ids) -> None:
    """Remove the stored bytes of every artifact of these executions; the rows go by cascade."""
    artifacts = session.execute(sa.select(Artifact).where(Artifact.execution_id.in_(execution_ids))).scalars()
    for artifact in artifacts:
        if artifact.purged_at is None:
            store.delete(session, artifact)


def delete_report(session: Session, store: ArtifactStore, report: ScheduledReport) -> None:
    """Delete a report with its whole history and files. Runs in flight then find no row and stop."""
    execution_ids = (
        session.execute(sa.select(ReportExecution.id).where(ReportExecution.report_id == report.id)).scalars().all()
    )
    if execution_ids:
        delete_artifact_files(session, store, execution_ids)
        session.execute(sa.delete(ReportExecution).where(ReportExecution.id.in_(execution_ids)))
    session.delete(report)
