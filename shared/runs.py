"""Starting a run of a report by hand: the execution row first, the message after the commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.executions import create_execution
from shared.messaging import RENDER_REPORT, Publisher, publish_after_commit
from shared.metrics import EXECUTIONS_QUEUED
from shared.models import ReportExecution, ScheduledReport, User


def publish_render(publisher: Publisher, execution_id: object, *, delay_ms: int | None = None) -> bool:
    return publish_after_commit(publisher, RENDER_REPORT, execution_id, delay_ms=delay_ms)


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
