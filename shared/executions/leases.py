"""Who works on a run right now: a lease on the execution row, renewed by a heartbeat.

Rendering (`running`) and sending (`sending`) both hold a lease: `lease_owner` (the worker's
id) and `lease_expires_at`; an alert event's delivery holds the same lease on its own row.
A live worker renews it every third of BIAPP_LEASE_TTL_S from a
background thread, whatever the work is doing, so a slow render or a slow SMTP server never
loses it. A worker that died (SIGKILL, out of memory, a lost node) stops renewing; once the
lease has expired a redelivered message takes the run over at once, without waiting for any time
limit; the sweeper, which cannot tell a dead worker from one that could not reach the database,
first grants the lease one more period (`grant_grace`).

A claim is one guarded UPDATE: it succeeds for one worker only. It answers what the caller
should do with its message: work (`ours`), come back when the lease runs out (`busy`), come
back at the scheduled instant (`early`), or drop it (`done`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.models import AlertDelivery, AlertEvent, Delivery, ReportExecution
from shared.outages import is_database_outage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    outcome: str  # ours | busy | early | done
    wait_s: float = 0.0  # busy/early: when to look again
    execution: ReportExecution | None = None


def new_token(worker_id: str) -> str:
    """A lease owner for one claim: the worker plus a nonce, so two threads of one process never share a run."""
    return f"{worker_id}:{uuid.uuid4().hex[:8]}"


def _expiry(now: datetime, ttl_s: float) -> datetime:
    return now + timedelta(seconds=ttl_s)


def _lease_free(now: datetime, worker: str, model=ReportExecution):
    return sa.or_(model.lease_expires_at.is_(None), model.lease_expires_at < now, model.lease_owner == worker)


def claim_render(session: Session, execution_id: uuid.UUID, *, worker: str, now: datetime, ttl_s: float) -> Claim:
    """queued (and due) -> running, or take over a `running` run whose lease expired; counts an attempt."""
    # Never before its instant: a delayed message that arrives early waits.
    due = sa.and_(ReportExecution.status == "queued", ReportExecution.scheduled_for <= now)
    values = {"started_at": now, "attempts": ReportExecution.attempts + 1}
    return _claim(session, execution_id, due, "running", worker=worker, now=now, ttl_s=ttl_s, values=values)


def claim_send(session: Session, execution_id: uuid.UUID, *, worker: str, now: datetime, ttl_s: float) -> Claim:
    """rendered -> sending, or resume a `sending` run whose lease is free or ours."""
    values = {"sending_at": sa.func.coalesce(ReportExecution.sending_at, now)}
    rendered = ReportExecution.status == "rendered"
    return _claim(session, execution_id, rendered, "sending", worker=worker, now=now, ttl_s=ttl_s, values=values)


def _claim(session, execution_id, entry, working: str, *, worker: str, now: datetime, ttl_s: float, values: dict):
    """One guarded UPDATE: enter `working` from `entry`, or take over `working` whose lease is free."""
    taken = session.execute(
        sa.update(ReportExecution)
        .where(
            ReportExecution.id == execution_id,
            sa.or_(entry, sa.and_(ReportExecution.status == working, _lease_free(now, worker))),
        )
        .values(status=working, lease_owner=worker, lease_expires_at=_expiry(now, ttl_s), **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    execution = session.get(ReportExecution, execution_id, populate_existing=True)
    if taken:
        return Claim("ours", execution=execution)
    return _why_not(execution, now, working=working)


def _why_not(execution: ReportExecution | None, now: datetime, *, working: str) -> Claim:
    if execution is None:
        return Claim("done")
    if execution.status == working and execution.lease_expires_at is not None:
        return Claim("busy", max(0.0, (execution.lease_expires_at - now).total_seconds()), execution)
    if execution.status == "queued" and execution.scheduled_for > now:
        return Claim("early", (execution.scheduled_for - now).total_seconds(), execution)
    return Claim("done", execution=execution)


def claim_failure_notices(
    session: Session, execution_id: uuid.UUID, *, worker: str, now: datetime, ttl_s: float
) -> Claim:
    """Take the lease of a `failed` run whose failure notices (webhook/chat rows) are still pending."""
    waiting = (
        sa.select(Delivery.id).where(Delivery.execution_id == ReportExecution.id, Delivery.status == "pending").exists()
    )
    taken = session.execute(
        sa.update(ReportExecution)
        .where(
            ReportExecution.id == execution_id, ReportExecution.status == "failed", waiting, _lease_free(now, worker)
        )
        .values(lease_owner=worker, lease_expires_at=_expiry(now, ttl_s))
        .execution_options(synchronize_session=False)
    ).rowcount
    execution = session.get(ReportExecution, execution_id, populate_existing=True)
    if taken:
        return Claim("ours", execution=execution)
    if execution is not None and execution.lease_expires_at is not None and execution.lease_expires_at >= now:
        return Claim("busy", (execution.lease_expires_at - now).total_seconds(), execution)
    return Claim("done", execution=execution)


def claim_alert_delivery(session: Session, event_id: uuid.UUID, *, worker: str, now: datetime, ttl_s: float) -> Claim:
    """Take the delivery lease of an alert event that still has recipients to reach."""
    waiting = (
        sa.select(AlertDelivery.id)
        .where(AlertDelivery.event_id == AlertEvent.id, AlertDelivery.status.in_(("pending", "sending")))
        .exists()
    )
    taken = session.execute(
        sa.update(AlertEvent)
        .where(AlertEvent.id == event_id, waiting, _lease_free(now, worker, AlertEvent))
        .values(
            lease_owner=worker,
            lease_expires_at=_expiry(now, ttl_s),
            delivering_since=sa.func.coalesce(AlertEvent.delivering_since, now),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    event = session.get(AlertEvent, event_id, populate_existing=True)
    if taken:
        return Claim("ours")
    if event is not None and event.lease_expires_at is not None and event.lease_expires_at >= now:
        return Claim("busy", (event.lease_expires_at - now).total_seconds())
    return Claim("done")


def renew(
    session: Session, object_id: uuid.UUID, *, worker: str, now: datetime, ttl_s: float, model=ReportExecution
) -> bool:
    """Extend our lease; False when it is no longer ours (taken over, or the work was closed)."""
    return bool(
        session.execute(
            sa.update(model)
            .where(model.id == object_id, model.lease_owner == worker)
            .values(lease_expires_at=_expiry(now, ttl_s))
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def grant_grace(session: Session, object_id: uuid.UUID, *, now: datetime, ttl_s: float, model=ReportExecution) -> bool:
    """Give a lease that ran out one more period from `now`, keeping its owner; False if it had not run out.

    An expired lease proves its holder dead only while the database was reachable: during an outage
    nobody can renew, so right after one a live worker's lease looks expired too. A takeover decided
    from such a lease (the sweeper's) grants this grace first: a live holder renews within a third
    of the period and keeps its run (the re-published message finds it `busy` and waits); a dead one
    does not, and the run is taken over when the grace ends.
    """
    return bool(
        session.execute(
            sa.update(model)
            .where(model.id == object_id, model.lease_expires_at < now)
            .values(lease_expires_at=_expiry(now, ttl_s))
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def release(session: Session, object_id: uuid.UUID, *, worker: str, model=ReportExecution) -> None:
    session.execute(
        sa.update(model)
        .where(model.id == object_id, model.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


class LeaseKeeper:
    """Renews a lease from a background thread while this process lives.

    `lost` turns true when a renewal finds the lease gone; a database error is not a loss (the
    next beat tries again): while the database is down nobody else can take the run either.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        execution_id: uuid.UUID,
        *,
        worker: str,
        clock,
        ttl_s: float,
        model=ReportExecution,
    ):
        self.factory = factory
        self.model = model
        self.execution_id = execution_id
        self.worker = worker
        self.clock = clock
        self.ttl_s = ttl_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{execution_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> bool:
        """Renew once now; False if the lease is no longer ours."""
        with transaction(self.factory) as session:
            ours = renew(
                session, self.execution_id, worker=self.worker, now=self.clock.now(), ttl_s=self.ttl_s, model=self.model
            )
        if not ours:
            self.lost = True
        return ours

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.beat():
                    log.warning("lease lost", extra={"execution_id": str(self.execution_id)})
                    return
            except Exception as exc:  # a database blip: the next beat tries again
                outage = is_database_outage(exc)  # expected during an outage: one line, no traceback
                log.warning(
                    "could not renew the lease%s",
                    " (database unreachable)" if outage else "",
                    exc_info=not outage,
                    extra={"execution_id": str(self.execution_id)},
                )
