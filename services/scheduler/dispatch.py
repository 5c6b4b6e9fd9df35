"""The dispatcher: turn due reports into executions, exactly once per occurrence.

Any number of scheduler replicas may run this at the same time. Rows are claimed
with FOR UPDATE SKIP LOCKED, the execution is unique per (report_id,
scheduled_for) and inserted ON CONFLICT DO NOTHING, next_run_at moves past now in
the same transaction, and messages go out only after the commit.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from shared.context import WorkerContext
from shared.db import transaction
from shared.metrics import EXECUTIONS_QUEUED
from shared.models import ReportExecution, ScheduledReport
from shared.runs import planned_recipients, publish_render
from shared.schedules import next_run, parse_schedule

log = logging.getLogger(__name__)

LOOKAHEAD = timedelta(seconds=60)  # runs due before the next tick start on the second
LATE_AFTER = timedelta(seconds=90)
BATCH = 1000


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def dispatch_due_reports(ctx: WorkerContext, *, now: datetime | None = None) -> list[tuple[uuid.UUID, int]]:
    """Claim due reports, create their executions, advance them; then publish. Returns what was sent."""
    now = now or ctx.clock.now()
    to_publish: list[tuple[uuid.UUID, int]] = []
    while True:
        claimed, created = _claim_batch(ctx, now)
        to_publish.extend(created)
        if claimed < BATCH:
            break
    for execution_id, delay_ms in to_publish:
        publish_render(ctx.publisher, execution_id, delay_ms=delay_ms or None)
    if to_publish:
        log.info("dispatched %d executions", len(to_publish))
    return to_publish


def _claim_batch(ctx: WorkerContext, now: datetime) -> tuple[int, list[tuple[uuid.UUID, int]]]:
    """One transaction: lock up to BATCH due reports, insert their executions, advance them."""
    created: list[tuple[uuid.UUID, int]] = []
    with transaction(ctx.session_factory) as session:
        insert = _insert(session.get_bind().dialect.name)
        due = (
            session.execute(
                sa.select(ScheduledReport)
                .where(ScheduledReport.is_active.is_(True), ScheduledReport.next_run_at <= now + LOOKAHEAD)
                .order_by(ScheduledReport.next_run_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for report in due:
            scheduled_for = report.next_run_at
            try:
                # Missed occurrences (downtime) collapse into this one run.
                following = next_run(parse_schedule(report.schedule), max(now, scheduled_for))
            except ValueError as exc:
                # A schedule that can no longer be computed (e.g. a zone gone from tzdata)
                # must not block every other report: stop it and say why.
                log.error("report stopped: its schedule is unusable: %s", exc, extra={"report_id": str(report.id)})
                report.next_run_at = None
                continue
            late = now - scheduled_for > LATE_AFTER
            execution_id = uuid.uuid4()
            inserted = session.execute(
                insert(ReportExecution)
                .values(
                    id=execution_id,
                    report_id=report.id,
                    trigger="schedule",
                    status="queued",
                    scheduled_for=scheduled_for,
                    queued_at=now,
                    last_enqueued_at=now,
                    late=late,
                    truncated=False,
                    attempts=0,
                    enqueue_count=1,
                    recipients=planned_recipients(report, trigger="schedule", requester=None),
                )
                .on_conflict_do_nothing(index_elements=["report_id", "scheduled_for"])
            ).rowcount
            report.next_run_at = following
            if inserted:
                delay = max(0, int((scheduled_for - now).total_seconds() * 1000))
                created.append((execution_id, delay))
                EXECUTIONS_QUEUED.labels("schedule").inc()
                lag = (now - scheduled_for).total_seconds()
                extra = {"report_id": str(report.id), "execution_id": str(execution_id), "lag_s": round(lag, 3)}
                if late:
                    log.warning("report was due %s ago; running once now", now - scheduled_for, extra=extra)
                else:
                    log.info("queued run scheduled for %s", scheduled_for.isoformat(), extra=extra)
    return len(due), created
