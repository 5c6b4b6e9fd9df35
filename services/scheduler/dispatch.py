"""The dispatcher: turn due reports into executions, exactly once per occurrence.

Any number of scheduler replicas may run this at the same time. Rows are claimed
with FOR UPDATE SKIP LOCKED, the execution is unique per (report_id,
scheduled_for) and inserted ON CONFLICT DO NOTHING, next_run_at moves past now in
the same transaction, and messages go out only after the commit.

A batch is a fixed number of statements whatever its size (claim, its destinations and
unsubscribed addresses, one multi-row INSERT … ON CONFLICT DO NOTHING RETURNING, one
executemany UPDATE), and publishing, which
waits for a broker confirm per message, runs on a few threads.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared import unsubscribe
from shared.context import WorkerContext
from shared.db import transaction
from shared.executions import new_execution_row
from shared.executions.creation import LATE_AFTER
from shared.metrics import EXECUTIONS_QUEUED
from shared.models import Destination, ReportExecution, ScheduledReport
from shared.runs import publish_render
from shared.schedules import next_run, parse_schedule

log = logging.getLogger(__name__)

LOOKAHEAD = timedelta(seconds=60)  # runs due before the next tick start on the second
BATCH = 1000
PUBLISH_THREADS = 8  # each thread keeps its own broker channel (Dramatiq's are thread-local)
_PARALLEL_FROM = 20

_publisher_pool: ThreadPoolExecutor | None = None


@dataclass(frozen=True)
class Dispatched:
    execution_id: uuid.UUID
    report_id: uuid.UUID
    scheduled_for: datetime
    delay_ms: int


def upsert_insert(session: Session):
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def following_occurrence(schedule: dict, due_at: datetime, now: datetime, *, what: str, extra: dict) -> datetime | None:
    """The next occurrence after this one; missed occurrences (downtime) collapse into the one being run.

    A schedule that can no longer be computed (e.g. a zone gone from tzdata) must not block
    every other one: it is stopped (None) and the reason logged.
    """
    try:
        return next_run(parse_schedule(schedule), max(now, due_at))
    except ValueError as exc:
        log.error("%s stopped: its schedule is unusable: %s", what, exc, extra=extra)
        return None


def dispatch_due_reports(ctx: WorkerContext, *, now: datetime | None = None) -> list[tuple[uuid.UUID, int]]:
    """Claim due reports, create their executions, advance them; then publish. Returns what was sent."""
    now = now or ctx.clock.now()
    dispatched: list[Dispatched] = []
    while True:
        claimed, created = _claim_batch(ctx, now)
        dispatched.extend(created)
        if claimed < BATCH:
            break
    _publish_all(ctx, dispatched)
    for run in dispatched:
        # A run claimed ahead of time (LOOKAHEAD) is not late: it starts on the second, after delay_ms.
        lag = max(0.0, (now - run.scheduled_for).total_seconds())
        extra = {"report_id": str(run.report_id), "execution_id": str(run.execution_id), "lag_s": round(lag, 3)}
        if lag > LATE_AFTER.total_seconds():
            log.warning("report was due %ds ago; running it once now", lag, extra=extra)
        elif run.delay_ms:
            log.info(
                "queued run scheduled for %s (starts in %.0fs)",
                run.scheduled_for.isoformat(),
                run.delay_ms / 1000,
                extra=extra,
            )
        else:
            log.info("queued run scheduled for %s", run.scheduled_for.isoformat(), extra=extra)
    if dispatched:
        EXECUTIONS_QUEUED.labels("schedule").inc(len(dispatched))
        log.info("dispatched %d executions", len(dispatched))
    return [(run.execution_id, run.delay_ms) for run in dispatched]


def _claim_batch(ctx: WorkerContext, now: datetime) -> tuple[int, list[Dispatched]]:
    """One transaction: lock up to BATCH due reports, insert their executions, advance them."""
    with transaction(ctx.session_factory) as session:
        due = session.execute(
            sa.select(
                ScheduledReport.id,
                ScheduledReport.schedule,
                ScheduledReport.next_run_at,
            )
            .where(ScheduledReport.is_active.is_(True), ScheduledReport.next_run_at <= now + LOOKAHEAD)
            .order_by(ScheduledReport.next_run_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        executions: list[dict] = []
        advances: list[dict] = []
        destinations = _destinations_of(session, [report.id for report in due])
        gone = unsubscribe.unsubscribed_by_report(session, [report.id for report in due])
        for report in due:
            following = following_occurrence(
                report.schedule, report.next_run_at, now, what="report", extra={"report_id": str(report.id)}
            )
            advances.append({"report_id": report.id, "following": following})
            if following is not None:
                executions.append(_execution_row(report, destinations.get(report.id, []), gone.get(report.id, ()), now))
        created = _insert_executions(session, executions, now)
        if advances:
            session.execute(
                sa.update(ScheduledReport.__table__)
                .where(ScheduledReport.__table__.c.id == sa.bindparam("report_id"))
                .values(next_run_at=sa.bindparam("following")),
                advances,
            )
    return len(due), created


def _destinations_of(session: Session, report_ids: list) -> dict:
    """Each due report's destinations, in one query."""
    found: dict = {}
    if report_ids:
        rows = session.execute(
            sa.select(Destination).where(Destination.report_id.in_(report_ids)).order_by(Destination.position)
        ).scalars()
        for destination in rows:
            found.setdefault(destination.report_id, []).append(destination)
    return found


def _execution_row(report, destinations: list, unsubscribed, now: datetime) -> dict:
    due = SimpleNamespace(id=report.id, destinations=destinations)
    return new_execution_row(
        due, trigger="schedule", scheduled_for=report.next_run_at, now=now, unsubscribed=unsubscribed
    )


def _insert_executions(session: Session, rows: list[dict], now: datetime) -> list[Dispatched]:
    """One INSERT … ON CONFLICT DO NOTHING; RETURNING says which rows are new (and ours to publish)."""
    if not rows:
        return []
    insert = upsert_insert(session)
    statement = (
        insert(ReportExecution.__table__)
        .on_conflict_do_nothing(
            index_elements=["report_id", "scheduled_for"], index_where=ReportExecution.trigger == "schedule"
        )
        .returning(ReportExecution.__table__.c.id)
    )
    # executemany with RETURNING: SQLAlchemy batches it into multi-row statements ("insertmanyvalues").
    inserted = set(session.execute(statement, rows).scalars())
    return [
        Dispatched(
            row["id"],
            row["report_id"],
            row["scheduled_for"],
            max(0, int((row["scheduled_for"] - now).total_seconds() * 1000)),
        )
        for row in rows
        if row["id"] in inserted
    ]


def _publish_all(ctx: WorkerContext, dispatched: list[Dispatched]) -> None:
    """Publish after the commit. A lost publish is not fatal: the sweeper re-enqueues queued runs."""

    def publish(run: Dispatched) -> None:
        publish_render(ctx.publisher, run.execution_id, delay_ms=run.delay_ms or None)

    if len(dispatched) < _PARALLEL_FROM:
        for run in dispatched:
            publish(run)
        return
    global _publisher_pool
    if _publisher_pool is None:
        _publisher_pool = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="dispatch-publish")
    list(_publisher_pool.map(publish, dispatched))
