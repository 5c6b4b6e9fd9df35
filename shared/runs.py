"""Starting a run of a report: the execution row first, the message after the commit."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.messaging import Publisher
from shared.metrics import EXECUTIONS_QUEUED
from shared.models import ReportExecution, ScheduledReport, User

log = logging.getLogger(__name__)


def planned_recipients(report: ScheduledReport, *, trigger: str, requester: User | None) -> list[dict]:
    """Who a run is for, fixed when it is queued. A test run goes only to the caller."""
    if trigger == "test":
        if requester is None:
            raise ValueError("a test run needs the requesting user")
        return [{"address": requester.email, "kind": "to"}]
    seen: set[str] = set()
    planned: list[dict] = []
    for kind, addresses in (("to", report.recipients or []), ("cc", report.cc or [])):
        for address in addresses:
            key = address.lower()
            if key not in seen:
                seen.add(key)
                planned.append({"address": address, "kind": kind})
    return planned


def create_execution(
    session: Session,
    report: ScheduledReport,
    *,
    trigger: str,
    now: datetime,
    requester: User | None = None,
) -> ReportExecution:
    execution = ReportExecution(
        report_id=report.id,
        trigger=trigger,
        status="queued",
        requested_by=requester.id if requester else None,
        scheduled_for=now,
        queued_at=now,
        last_enqueued_at=now,
        recipients=planned_recipients(report, trigger=trigger, requester=requester),
    )
    session.add(execution)
    session.flush()
    return execution


def publish_render(publisher: Publisher, execution_id: object, *, delay_ms: int | None = None) -> bool:
    """Send the render message. A lost publish is not fatal: the sweeper re-enqueues queued runs."""
    try:
        publisher.send("render_report", str(execution_id), delay_ms=delay_ms)
        return True
    except Exception:
        log.exception(
            "publishing render_report failed; the sweeper will re-enqueue", extra={"execution_id": str(execution_id)}
        )
        return False


def run_now(
    factory: sessionmaker[Session],
    publisher: Publisher,
    report_id: object,
    *,
    trigger: str,
    requester: User,
    now: datetime,
) -> ReportExecution:
    """Queue a manual or test run; never touches next_run_at."""
    with transaction(factory) as session:
        report = session.get(ScheduledReport, report_id)
        user = session.get(User, requester.id)
        execution = create_execution(session, report, trigger=trigger, now=now, requester=user)
    EXECUTIONS_QUEUED.labels(trigger).inc()
    publish_render(publisher, execution.id)
    return execution
