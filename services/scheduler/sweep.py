"""The sweeper: nothing stays queued, running, rendered or sending forever.

Messages can be lost (a publish that failed after the commit) and workers can die
(SIGKILL, out of memory) while holding a run. A worker holds a run under a lease
renewed by a heartbeat (shared/executions/leases.py): once a minute this sweeper
takes over every `running` or `sending` run whose lease has run out (not after a time
limit; a `sending` run's mailer first gets one more lease period to renew, since right
after a database outage a live mailer's lease looks expired too), re-publishes runs
whose message was lost, and fails, with an error a user can read, what has been tried
often enough or overran its time limit.

Each verdict is a guarded UPDATE on rows locked FOR UPDATE SKIP LOCKED, so several
scheduler replicas sweeping at once act on each execution once; messages go out
only after the commit, like everywhere else.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared import executions
from shared.config import Settings
from shared.context import WorkerContext
from shared.db import transaction
from shared.messaging import DELIVER_REPORT, RENDER_REPORT, publish_after_commit
from shared.metrics import EXECUTIONS
from shared.models import Delivery, ReportExecution

log = logging.getLogger(__name__)

# How often one execution may be handed back to the pipeline before it is failed.
MAX_ENQUEUES = 8
# Grace beyond a time limit: Dramatiq's own time limit gets the first chance to act.
GRACE = timedelta(seconds=30)
# Re-publishing backs off (doubling) up to this interval, so an outage of the
# renderer or mailer does not fill their queues with duplicates.
MAX_INTERVAL = timedelta(hours=1)
BATCH = 500


@dataclass
class SweepResult:
    requeued: list[uuid.UUID] = field(default_factory=list)  # render_report re-published
    redelivered: list[uuid.UUID] = field(default_factory=list)  # deliver_report re-published
    failed: list[uuid.UUID] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.redelivered or self.failed)


def _backoff(base: timedelta, enqueue_count: int) -> timedelta:
    return min(base * 2 ** max(0, enqueue_count - 1), MAX_INTERVAL)


def _latest(*moments: datetime | None) -> datetime:
    return max(m for m in moments if m is not None)


def queued_deadline(execution: ReportExecution, settings: Settings) -> datetime:
    """When a queued run counts as lost. A run waiting for a retry may sit in the delay queue."""
    base = timedelta(seconds=settings.stuck_queued_after_s)
    if execution.attempts:
        base += timedelta(seconds=settings.max_backoff_s)
    reference = _latest(execution.queued_at, execution.last_enqueued_at, execution.scheduled_for)
    return reference + _backoff(base, execution.enqueue_count)


def running_deadline(execution: ReportExecution, settings: Settings) -> datetime:
    """The render time limit: past it a run is stopped even if its worker still renews the lease (hung in C code)."""
    started = execution.started_at or execution.queued_at
    return started + timedelta(seconds=settings.render_time_limit_s) + GRACE


def lease_expired(execution: ReportExecution, now: datetime) -> bool:
    """The worker that held the run stopped renewing its lease: it died; take the run over now."""
    return execution.lease_expires_at is not None and execution.lease_expires_at < now


def rendered_deadline(execution: ReportExecution, settings: Settings) -> datetime:
    reference = _latest(execution.rendered_at, execution.last_enqueued_at)
    return reference + _backoff(timedelta(seconds=settings.stuck_queued_after_s), execution.enqueue_count)


def sending_deadline(execution: ReportExecution, settings: Settings, last_activity: datetime | None) -> datetime:
    """A mailer retry waits up to max_backoff between attempts, with no lease held."""
    reference = _latest(execution.sending_at, execution.rendered_at, execution.last_enqueued_at, last_activity)
    limit = timedelta(seconds=settings.mail_time_limit_s + settings.max_backoff_s)
    return reference + _backoff(limit, 1) + GRACE


def sweep_stuck_executions(ctx: WorkerContext, *, now: datetime | None = None) -> SweepResult:
    """One sweep over unfinished executions; returns what it did."""
    now = now or ctx.clock.now()
    result = SweepResult()
    with transaction(ctx.session_factory) as session:
        for execution in _unfinished(session):
            _judge(session, ctx.settings, execution, now, result)
        for execution in _failed_with_notices(session):
            _judge_notices(session, ctx.settings, execution, now, result)
    for execution_id in result.requeued:
        _publish(ctx, RENDER_REPORT, execution_id)
    for execution_id in result.redelivered:
        _publish(ctx, DELIVER_REPORT, execution_id)
    if result:
        log.warning(
            "sweeper: %d re-queued, %d re-sent to the mailer, %d failed",
            len(result.requeued),
            len(result.redelivered),
            len(result.failed),
        )
    return result


def _unfinished(session: Session) -> Iterable[ReportExecution]:
    return (
        session.execute(
            sa.select(ReportExecution)
            .where(ReportExecution.status.in_(("queued", "running", "rendered", "sending")))
            .order_by(ReportExecution.queued_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )


def _judge(session: Session, settings: Settings, execution: ReportExecution, now: datetime, result: SweepResult):
    status = execution.status
    if status == "queued" and now > queued_deadline(execution, settings):
        if execution.enqueue_count >= MAX_ENQUEUES:
            _fail(session, execution, now, result, _never_started(execution, now))
        elif executions.bump(session, execution.id, "queued", now):
            result.requeued.append(execution.id)
    elif status == "running":
        _judge_running(session, settings, execution, now, result)
    elif status == "rendered" and now > rendered_deadline(execution, settings):
        if execution.enqueue_count >= MAX_ENQUEUES:
            _fail(session, execution, now, result, "The files were rendered but no mailer picked the run up.")
        elif executions.bump(session, execution.id, "rendered", now):
            result.redelivered.append(execution.id)
    elif status == "sending":
        _judge_sending(session, settings, execution, now, result)


def _judge_running(session: Session, settings: Settings, execution: ReportExecution, now: datetime, result):
    over_limit = now > running_deadline(execution, settings)
    # Without a lease (rows from before leases) only the time limit tells a dead worker.
    lost = lease_expired(execution, now) or (execution.lease_expires_at is None and over_limit)
    if over_limit and not lost:
        _fail(session, execution, now, result, _render_hung(settings))
    elif lost:
        if execution.attempts > settings.render_max_retries or execution.enqueue_count >= MAX_ENQUEUES:
            _fail(session, execution, now, result, _render_lost(execution, settings))
        elif execution.lease_expires_at is not None:
            # Its renderer stopped renewing: it died, or the database was away and it could not. It gets one
            # more lease period (a live one renews and keeps its render); the re-published message takes the
            # run over when that period ends if nobody renewed it.
            executions.grant_grace(session, execution.id, now=now, ttl_s=settings.lease_ttl_s)
            if executions.bump(session, execution.id, "running", now):
                result.requeued.append(execution.id)
        elif executions.move(
            session,
            execution.id,
            expected="running",
            target="queued",
            now=now,
            error="The renderer stopped without finishing (no result within the time limit); the run was queued again.",
            enqueue_count=ReportExecution.enqueue_count + 1,
        ):
            result.requeued.append(execution.id)


def _judge_sending(session: Session, settings: Settings, execution: ReportExecution, now: datetime, result):
    if execution.lease_expires_at is not None and execution.lease_expires_at >= now:
        return  # a mailer holds it
    last_activity = session.execute(
        sa.select(sa.func.max(Delivery.updated_at)).where(Delivery.execution_id == execution.id)
    ).scalar_one_or_none()
    if not lease_expired(execution, now) and now <= sending_deadline(execution, settings, last_activity):
        return  # between retries: a retried message is on its way
    if execution.enqueue_count >= MAX_ENQUEUES:
        if executions.close_from_ledger(session, execution.id, now=now, abandoned=True):
            result.failed.append(execution.id)
    elif lease_expired(execution, now) and executions.bump(session, execution.id, "sending", now):
        # Its mailer stopped renewing: it died, or the database was away and it could not. Right after
        # an outage a live mailer may still hold copies the server accepted but the ledger does not show
        # yet, so it gets one more lease period to renew (the message then waits for it); a dead one is
        # taken over when that period ends (the ledger sends only to recipients not yet reached).
        executions.grant_grace(session, execution.id, now=now, ttl_s=settings.lease_ttl_s)
        result.redelivered.append(execution.id)
    elif executions.bump(session, execution.id, "sending", now):
        # The mailer's ledger sends only to recipients not yet reached.
        result.redelivered.append(execution.id)


def _failed_with_notices(session: Session) -> Iterable[ReportExecution]:
    """Failed runs whose webhook/chat destinations have not heard of the failure yet."""
    pending = sa.select(Delivery.id).where(Delivery.execution_id == ReportExecution.id, Delivery.status == "pending")
    return (
        session.execute(
            sa.select(ReportExecution)
            .where(ReportExecution.status == "failed", pending.exists())
            .order_by(ReportExecution.finished_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )


def _judge_notices(session: Session, settings: Settings, execution: ReportExecution, now: datetime, result):
    """Re-publish failure notices whose message was lost or whose mailer died; give up after the retry window."""
    if execution.lease_expires_at is not None and execution.lease_expires_at >= now:
        return  # a mailer is sending them
    if now - execution.finished_at >= timedelta(seconds=settings.mail_retry_window_s) + GRACE:
        executions.give_up_notices(session, execution.id, "not delivered: the retry window is over")
        return
    last_activity = session.execute(
        sa.select(sa.func.max(Delivery.updated_at)).where(Delivery.execution_id == execution.id)
    ).scalar_one_or_none()
    reference = _latest(execution.finished_at, execution.last_enqueued_at, last_activity)
    quiet = _backoff(timedelta(seconds=settings.stuck_queued_after_s), execution.enqueue_count)
    if lease_expired(execution, now) or now > reference + quiet:
        if executions.bump(session, execution.id, "failed", now):
            result.redelivered.append(execution.id)


def _fail(session: Session, execution: ReportExecution, now: datetime, result: SweepResult, error: str) -> None:
    failed, notices = executions.fail_and_notify(session, execution.id, now=now, error=error)
    if failed:
        EXECUTIONS.labels("failed", execution.trigger).inc()
        result.failed.append(execution.id)
        if notices:
            result.redelivered.append(execution.id)
        log.warning("sweeper failed a stuck run: %s", error, extra={"execution_id": str(execution.id)})


def _never_started(execution: ReportExecution, now: datetime) -> str:
    waited = int((now - execution.queued_at).total_seconds() // 60)
    return (
        f"The run never started: it was queued {execution.enqueue_count} times over {waited} minutes "
        "and no renderer picked it up (is a renderer worker running?)."
    )


def _render_hung(settings: Settings) -> str:
    return (
        f"Rendering did not finish within the time limit of {settings.render_time_limit_s} s "
        "(BIAPP_RENDER_TIME_LIMIT_S) and was stopped. Try a smaller query or fewer formats."
    )


def _render_lost(execution: ReportExecution, settings: Settings) -> str:
    return (
        f"Rendering stopped without finishing after {execution.attempts} attempt(s): the renderer worker "
        "stopped or was killed each time (out of memory?). Try a smaller query or fewer formats."
    )


def _publish(ctx: WorkerContext, actor: str, execution_id: uuid.UUID) -> None:
    # The row says when it was last enqueued; if this publish is lost the next sweep tries again.
    publish_after_commit(ctx.publisher, actor, execution_id)
