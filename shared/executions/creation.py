"""An execution row: who the run is for and when it is due, fixed when it is queued."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from shared import unsubscribe
from shared.destinations import planned
from shared.models import ReportExecution, ScheduledReport, User

# A scheduled run that starts this long after its instant is marked late.
LATE_AFTER = timedelta(seconds=90)


def planned_recipients(
    report, *, trigger: str, requester: User | None, unsubscribed: Collection[str] = ()
) -> list[dict]:
    """Who a run is for, fixed when it is queued (shared.destinations.planned). A test run goes only to the caller;
    other runs leave out the email addresses in `unsubscribed` (lower-case: shared.unsubscribe)."""
    plan = planned(report.destinations, trigger=trigger, requester=requester)
    if trigger == "test" or not unsubscribed:
        return plan
    return [p for p in plan if p.get("channel", "email") != "email" or p["address"].lower() not in unsubscribed]


def new_execution_row(
    report,
    *,
    trigger: str,
    scheduled_for: datetime,
    now: datetime,
    requester: User | None = None,
    unsubscribed: Collection[str] = (),
) -> dict:
    """The column values of a new queued execution (the dispatcher inserts many at once)."""
    return {
        "id": uuid.uuid4(),
        "report_id": report.id,
        "trigger": trigger,
        "status": "queued",
        "requested_by": requester.id if requester else None,
        "scheduled_for": scheduled_for,
        "queued_at": now,
        "last_enqueued_at": now,
        "late": trigger == "schedule" and now - scheduled_for > LATE_AFTER,
        "truncated": False,
        "attempts": 0,
        "enqueue_count": 1,
        "recipients": planned_recipients(report, trigger=trigger, requester=requester, unsubscribed=unsubscribed),
    }


def create_execution(
    session: Session,
    report: ScheduledReport,
    *,
    trigger: str,
    now: datetime,
    requester: User | None = None,
) -> ReportExecution:
    """A manual or test run, due now."""
    gone = unsubscribe.unsubscribed(session, report.id) if trigger != "test" else set()
    execution = ReportExecution(
        **new_execution_row(report, trigger=trigger, scheduled_for=now, now=now, requester=requester, unsubscribed=gone)
    )
    session.add(execution)
    session.flush()
    return execution
