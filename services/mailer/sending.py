"""One delivery pass over a run's (or alert event's) pending ledger rows, whatever their channels.

Rows are grouped by channel; each channel is opened once and sends row by row. An accepted
copy is recorded at once (retried while the database is away: it must never be sent again);
a refused one is failed (permanent) or left pending for a later pass (transient, with the
time a 429's Retry-After named); a channel that fails as a whole shares its fate with the
rows it had not yet tried. The caller decides from the result whether to retry or close.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.mailer.channels.base import Channel, ChannelDown, Job, Refused, Target
from shared import executions
from shared.db import transaction
from shared.metrics import DELIVERIES

log = logging.getLogger(__name__)

# How long an accepted copy's record is retried before the worker gives up (and crashes loudly).
RECORD_PATIENCE_S = 600

Record = Callable[..., None]  # record(delivery_id, status, *, error, answer, message_id, next_attempt_at)


@dataclass
class PassResult:
    sent: int = 0
    transient_left: bool = False
    backoff: bool = False  # a transient failure that named no time: the broker's backoff decides
    lease_lost: bool = False
    failure: str | None = None  # a channel down for good: its message
    not_before: list[datetime] = field(default_factory=list)  # Retry-After instants of deferred rows


def deliver_pass(
    channels: dict[str, Channel], job: Job, targets: list[Target], lease, *, record: Record, extra: dict
) -> PassResult:
    result = PassResult()
    groups: dict[str, list[Target]] = {}
    for target in targets:
        groups.setdefault(target.channel, []).append(target)
    for kind, group in groups.items():
        channel = channels.get(kind)
        if channel is None:
            for target in group:
                record(target.delivery_id, "failed", error=f"no {kind} channel in this version")
            continue
        try:
            session = channel.open(job)
        except ChannelDown as exc:
            _channel_down(kind, group, exc, result, record, extra)
            continue
        try:
            for index, target in enumerate(group):
                if lease.lost:
                    log.warning("lease lost; another worker resumes the delivery", extra=extra)
                    result.lease_lost = True
                    return result
                try:
                    accepted = session.send(target)
                except Refused as exc:
                    _refused(kind, target, exc, job.now, result, record)
                    continue
                except ChannelDown as exc:
                    _channel_down(kind, group[index:], exc, result, record, extra)
                    break
                # The far end has it: that fact must reach the ledger, however long the database is away.
                executions.record_accepted(
                    lambda t=target, a=accepted: record(
                        t.delivery_id, "sent", answer=a.answer, message_id=a.message_id
                    ),
                    patience_s=RECORD_PATIENCE_S,
                    extra={**extra, "channel": kind},
                    sleep=time.sleep,
                )
                DELIVERIES.labels("sent", kind).inc()
                result.sent += 1
        finally:
            session.close()
    return result


def _refused(kind: str, target: Target, exc: Refused, now: datetime, result: PassResult, record: Record) -> None:
    if exc.permanent:
        record(target.delivery_id, "failed", error=exc.message, answer=exc.answer)
        DELIVERIES.labels("refused", kind).inc()
        return
    not_before = now + timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else None
    record(target.delivery_id, "pending", error=exc.message, answer=exc.answer, next_attempt_at=not_before)
    DELIVERIES.labels("deferred", kind).inc()
    result.transient_left = True
    if not_before is not None:
        result.not_before.append(not_before)
    else:
        result.backoff = True


def _channel_down(
    kind: str, group: list[Target], exc: ChannelDown, result: PassResult, record: Record, extra: dict
) -> None:
    status = "failed" if exc.permanent else "pending"
    for target in group:
        record(target.delivery_id, status, error=exc.message)
    DELIVERIES.labels("failed" if exc.permanent else "deferred", kind).inc(len(group))
    log.warning("%s channel failed (%s): %s", kind, exc.reason, exc.message, extra=extra)
    if exc.permanent:
        result.failure = exc.message
    else:
        result.transient_left = result.backoff = True


def retry_delay_ms(result: PassResult, waiting: list[datetime], now: datetime, window_end: datetime) -> int | None:
    """When to look again: the earliest Retry-After instant when every deferred row named one, else the
    broker's own backoff (None); never past the end of the retry window."""
    instants = result.not_before + waiting
    if result.backoff or not instants:
        return None
    earliest = min(min(instants), window_end)
    return max(1000, int((earliest - now).total_seconds() * 1000) + 250)


def as_targets(rows, secrets: dict[uuid.UUID, dict]) -> list[Target]:
    """Ledger rows (id, recipient, kind, channel, destination_id, target) as channel targets."""
    return [
        Target(
            delivery_id=row.id,
            channel=row.channel or "email",
            address=row.recipient,
            role=row.kind,
            target=row.target or row.recipient,
            secret=secrets.get(row.destination_id, {}) if row.destination_id else {},
        )
        for row in rows
    ]


def record_outcome(
    ctx, model, delivery_id, status: str, *, error=None, answer=None, message_id=None, next_attempt_at=None
) -> None:
    """One destination's outcome in its own commit, in a run's (`Delivery`) or an alert event's ledger.

    The far end's answer is also kept as the SMTP reply where the ledger has one.
    """
    with transaction(ctx.session_factory) as session:
        executions.record_delivery(
            session,
            delivery_id,
            status,
            now=ctx.clock.now(),
            error=error,
            reply=answer,
            answer=answer,
            message_id=message_id,
            next_attempt_at=next_attempt_at,
            model=model,
        )
