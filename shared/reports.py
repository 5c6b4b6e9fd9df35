"""Scheduled report rules that do not depend on HTTP: sources, schedules, summaries."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.errors import FieldError
from shared.models import Dashboard, ReportExecution, SavedQuery, ScheduledReport, User
from shared.schedules import next_run, parse_schedule


def _readable(obj, user: User) -> bool:
    return obj is not None and (user.role == "admin" or obj.owner_id == user.id or obj.shared)


def check_source(session: Session, user: User, data: dict) -> None:
    """The report's query or dashboard must exist and be visible to its owner."""
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


def last_executions(session: Session, report_ids: list) -> dict:
    """The newest execution of each report, in one query."""
    if not report_ids:
        return {}
    newest = (
        sa.select(ReportExecution.report_id, sa.func.max(ReportExecution.queued_at).label("at"))
        .where(ReportExecution.report_id.in_(report_ids))
        .group_by(ReportExecution.report_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(ReportExecution).join(
            newest, sa.and_(ReportExecution.report_id == newest.c.report_id, ReportExecution.queued_at == newest.c.at)
        )
    ).scalars()
    return {row.report_id: row for row in rows}
