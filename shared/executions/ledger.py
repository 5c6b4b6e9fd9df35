"""The delivery ledger: one row per (execution, recipient), and closing a run from it.

The ledger, not the broker, decides who still needs a copy: a run sends only to rows
still `pending`. Each accepted copy is recorded in its own commit right after the
server accepted it. A run is closed from its rows: `success` when every recipient was
reached, `partial` when some were, `failed` when none was.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.executions.states import move
from shared.metrics import EXECUTIONS
from shared.models import Delivery, ReportExecution
from shared.outages import is_database_outage

log = logging.getLogger(__name__)

ABANDONED = "not delivered: the mailer did not finish"


def insert_deliveries(session: Session, execution: ReportExecution) -> None:
    """Create the missing ledger rows for the run's planned recipients (idempotent)."""
    existing = set(
        session.execute(sa.select(Delivery.recipient).where(Delivery.execution_id == execution.id)).scalars()
    )
    for planned in execution.recipients:
        if planned["address"] not in existing:
            session.add(ledger_row(Delivery, planned, execution_id=execution.id))


def insert_failure_notices(session: Session, execution_id: uuid.UUID) -> bool:
    """A run that failed before sending: its webhook and chat destinations hear about it.

    Email recipients do not (a failure email to everyone on the list is noise; the owner sees the
    run's history), but a webhook consumer or a team channel waiting for the numbers must learn
    that none are coming. Only for a run with no ledger rows yet; True when rows were added (the
    caller then publishes the delivery message after its commit).
    """
    execution = session.get(ReportExecution, execution_id, populate_existing=True)
    if execution is None or execution.status != "failed":
        return False
    if session.execute(sa.select(Delivery.id).where(Delivery.execution_id == execution_id).limit(1)).first():
        return False
    planned = [p for p in execution.recipients or () if p.get("channel", "email") != "email"]
    for destination in planned:
        session.add(ledger_row(Delivery, destination, execution_id=execution_id))
    session.flush()
    return bool(planned)


def give_up_notices(session: Session, execution_id: uuid.UUID, reason: str) -> int:
    """Failure notices still pending when their retry window ends fail; the run itself stays failed."""
    return session.execute(
        sa.update(Delivery)
        .where(Delivery.execution_id == execution_id, Delivery.status == "pending")
        .values(status="failed", error=sa.func.coalesce(Delivery.error, reason))
        .execution_options(synchronize_session=False)
    ).rowcount


def ledger_row(model, planned: dict, **owner):
    """One ledger row (`Delivery` or `AlertDelivery`) for a planned destination of a run or event."""
    destination_id = planned.get("destination_id")
    return model(
        **owner,
        recipient=planned["address"],
        kind=planned["kind"],
        channel=planned.get("channel", "email"),
        destination_id=uuid.UUID(destination_id) if destination_id else None,
        target=planned.get("target") or planned["address"],
    )


def record_delivery(
    session: Session,
    delivery_id: uuid.UUID,
    status: str,
    *,
    now: datetime,
    error: str | None = None,
    reply: str | None = None,
    message_id: str | None = None,
    answer: str | None = None,
    next_attempt_at: datetime | None = None,
    model=Delivery,
) -> None:
    """Write one recipient's outcome (`sent`, `failed`, or `pending` for a retry); counts the attempt.

    `model` is the ledger: a report run's `Delivery` or an alert event's `AlertDelivery`.
    """
    values: dict = {
        "status": status,
        "attempts": model.attempts + 1,
        "error": error,
        "next_attempt_at": next_attempt_at,
    }
    if answer is not None:
        values["answer"] = answer
    if status == "sent":
        values.update(sent_at=now, message_id=message_id, error=None)
        if hasattr(model, "smtp_reply"):
            values["smtp_reply"] = reply
    session.execute(
        sa.update(model)
        .where(model.id == delivery_id, model.status != "sent")
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def record_accepted(write, *, patience_s: float, extra: dict, sleep=time.sleep) -> None:
    """Run `write` (recording a copy the server accepted) until it succeeds, waiting out a database outage.

    Until it is written nothing else may send to that recipient: the caller keeps its lease (the
    heartbeat goes on; while the database is down nobody can take the work over either). The one
    window left is a crash of the process between the server's OK and this write: that recipient is
    then still `pending` and the next worker sends a second copy, with the same Message-ID.
    """
    delay = 0.5
    deadline = time.monotonic() + patience_s
    while True:
        try:
            write()
            return
        except Exception as exc:
            if not is_database_outage(exc) or time.monotonic() > deadline:
                raise
            log.warning("could not record an accepted copy; retrying in %.1f s", delay, extra=extra)
            sleep(delay)
            delay = min(delay * 2, 5.0)


def close_from_ledger(
    session: Session, execution_id: uuid.UUID, *, now: datetime, failure: str | None = None, abandoned: bool = False
) -> str | None:
    """Close a `sending` run: rows still pending fail, then success / partial / failed from the rows.

    `failure` is why the whole run stopped (a refused login); `abandoned` means no mailer finished it
    (the sweeper's verdict). Returns the final state, or None when the run was not `sending`.
    """
    reason = failure or (ABANDONED if abandoned else None)
    session.execute(
        sa.update(Delivery)
        .where(Delivery.execution_id == execution_id, Delivery.status == "pending")
        .values(status="failed", error=reason or sa.func.coalesce(Delivery.error, "not delivered"))
        .execution_options(synchronize_session=False)
    )
    # populate_existing: the caller may hold these rows already (an execution loads its deliveries).
    rows = (
        session.execute(
            sa.select(Delivery).where(Delivery.execution_id == execution_id).execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )
    sent = [d for d in rows if d.status == "sent"]
    failed = [d for d in rows if d.status != "sent"]
    if rows and not failed:
        target, error = "success", None
    elif sent:
        target = "partial"
        error = f"{len(failed)} of {len(rows)} recipients not reached: " + "; ".join(
            f"{d.target or d.recipient}: {d.error}" for d in failed
        )
    else:
        target = "failed"
        error = failure or "; ".join(f"{d.target or d.recipient}: {d.error}" for d in failed) or "no recipients"
    if not move(session, execution_id, expected="sending", target=target, now=now, error=error):
        return None
    trigger = session.execute(sa.select(ReportExecution.trigger).where(ReportExecution.id == execution_id)).scalar()
    EXECUTIONS.labels(target, trigger).inc()
    log.info("run closed: %s", target, extra={"execution_id": str(execution_id), "recipient_count": len(sent)})
    return target
