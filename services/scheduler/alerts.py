"""The alert dispatcher: turn due alerts into evaluation events, exactly once per occurrence.

The same rules as the report dispatcher (services/scheduler/dispatch.py): due rows are
claimed FOR UPDATE SKIP LOCKED, one event per (alert_id, scheduled_for) is inserted
ON CONFLICT DO NOTHING, next_run_at moves past now in the same transaction, and
`evaluate_alert` is published only after the commit. Missed occurrences collapse
into one evaluation.

The tick also re-enqueues events still `pending` after a while (a publish lost
after the commit, or a worker that died) and gives up on them after a few tries,
so no evaluation stays pending forever.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from services.scheduler.dispatch import BATCH, LOOKAHEAD, following_occurrence, upsert_insert
from shared import executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.messaging import DELIVER_ALERT, EVALUATE_ALERT, publish_after_commit
from shared.models import Alert, AlertDelivery, AlertEvent

log = logging.getLogger(__name__)

REQUEUE_AFTER = timedelta(minutes=3)
MAX_ENQUEUES = 3


@dataclass(frozen=True)
class Queued:
    event_id: uuid.UUID
    delay_ms: int


def dispatch_due_alerts(ctx: WorkerContext, *, now: datetime | None = None) -> list[tuple[uuid.UUID, int]]:
    """Claim due alerts, create their events, advance them; then publish. Returns what was sent."""
    now = now or ctx.clock.now()
    queued: list[Queued] = []
    while True:
        claimed, created = _claim_batch(ctx, now)
        queued.extend(created)
        if claimed < BATCH:
            break
    queued.extend(_requeue_stuck(ctx, now))
    for item in queued:
        publish_after_commit(ctx.publisher, EVALUATE_ALERT, item.event_id, delay_ms=item.delay_ms or None)
    for event_id in _undelivered(ctx, now):
        publish_after_commit(ctx.publisher, DELIVER_ALERT, event_id)
    if queued:
        log.info("dispatched %d alert evaluations", len(queued))
    return [(item.event_id, item.delay_ms) for item in queued]


def _claim_batch(ctx: WorkerContext, now: datetime) -> tuple[int, list[Queued]]:
    with transaction(ctx.session_factory) as session:
        due = session.execute(
            sa.select(Alert.id, Alert.schedule, Alert.next_run_at)
            .where(Alert.is_active.is_(True), Alert.next_run_at <= now + LOOKAHEAD)
            .order_by(Alert.next_run_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        rows: list[dict] = []
        advances: list[dict] = []
        for alert in due:
            following = following_occurrence(
                alert.schedule, alert.next_run_at, now, what="alert", extra={"alert_id": str(alert.id)}
            )
            advances.append({"alert_id": alert.id, "following": following})
            if following is not None:
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "alert_id": alert.id,
                        "trigger": "schedule",
                        "state": "pending",
                        "scheduled_for": alert.next_run_at,
                        "queued_at": now,
                        "last_enqueued_at": now,
                        "enqueue_count": 1,
                        "notified": False,
                    }
                )
        created: list[Queued] = []
        if rows:
            insert = upsert_insert(session)
            statement = (
                insert(AlertEvent.__table__)
                .on_conflict_do_nothing(
                    index_elements=["alert_id", "scheduled_for"], index_where=AlertEvent.trigger == "schedule"
                )
                .returning(AlertEvent.__table__.c.id)
            )
            inserted = set(session.execute(statement, rows).scalars())
            created = [
                Queued(row["id"], max(0, int((row["scheduled_for"] - now).total_seconds() * 1000)))
                for row in rows
                if row["id"] in inserted
            ]
        if advances:
            session.execute(
                sa.update(Alert.__table__)
                .where(Alert.__table__.c.id == sa.bindparam("alert_id"))
                .values(next_run_at=sa.bindparam("following")),
                advances,
            )
    return len(due), created


def _requeue_stuck(ctx: WorkerContext, now: datetime) -> list[Queued]:
    """Pending events nobody evaluated: publish again, or after MAX_ENQUEUES record why they never ran."""
    with transaction(ctx.session_factory) as session:
        stuck = (
            session.execute(
                sa.select(AlertEvent)
                .where(AlertEvent.state == "pending", AlertEvent.last_enqueued_at < now - REQUEUE_AFTER)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        again: list[Queued] = []
        for event in stuck:
            if event.enqueue_count >= MAX_ENQUEUES:
                event.state = "error"
                event.evaluated_at = now
                event.error = f"Not evaluated after {event.enqueue_count} attempts (are the renderer workers running?)."
                log.error("alert evaluation abandoned", extra={"event_id": str(event.id)})
            else:
                event.enqueue_count += 1
                event.last_enqueued_at = now
                again.append(Queued(event.id, 0))
    return again


def _undelivered(ctx: WorkerContext, now: datetime) -> list[uuid.UUID]:
    """Events with recipients still to reach whose worker stopped renewing its lease, or whose message
    was lost (nobody touched them for longer than any retry backoff).

    An expired lease first gets one more period (`grant_grace`): right after a database outage a live
    mailer's lease looks expired too, and it must keep its event; a dead one's is taken over after it.
    """
    quiet = now - max(REQUEUE_AFTER, timedelta(seconds=ctx.settings.max_backoff_s + 120))
    with transaction(ctx.session_factory) as session:
        rows = session.execute(
            sa.select(AlertDelivery.event_id, AlertEvent.lease_expires_at)
            .join(AlertEvent, AlertEvent.id == AlertDelivery.event_id)
            .where(
                AlertDelivery.status.in_(("pending", "sending")),
                sa.or_(
                    AlertEvent.lease_expires_at < now,
                    sa.and_(AlertEvent.lease_expires_at.is_(None), AlertDelivery.updated_at < quiet),
                ),
            )
            .distinct()
            .limit(BATCH)
        ).all()
        for event_id, lease_expires_at in rows:
            if lease_expires_at is not None:
                executions.grant_grace(session, event_id, now=now, ttl_s=ctx.settings.lease_ttl_s, model=AlertEvent)
        return [event_id for event_id, _ in rows]
