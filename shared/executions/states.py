"""The execution state machine: each move a guarded UPDATE.

A move names the state it expects to leave. The UPDATE carries `WHERE status =
:expected`, so when a duplicate or redelivered message tries the same move, it
matches no row and the caller learns it has nothing to do.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.errors import IllegalTransitionError
from shared.models import ReportExecution

TRANSITIONS: dict[str, frozenset[str]] = {
    # queued -> skipped: the report was paused or deleted before the run started.
    "queued": frozenset({"running", "failed", "skipped"}),
    # running -> queued: a transient failure hands the run back for a retry.
    "running": frozenset({"rendered", "skipped", "failed", "queued"}),
    "rendered": frozenset({"sending", "failed"}),
    # sending -> failed only when no recipient was reached; otherwise partial.
    "sending": frozenset({"success", "partial", "failed"}),
    "success": frozenset(),
    "partial": frozenset(),
    "failed": frozenset(),
    "skipped": frozenset(),
}

TERMINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
ACTIVE = frozenset(TRANSITIONS) - TERMINAL

_TIMESTAMP = {
    "running": "started_at",
    "rendered": "rendered_at",
    "sending": "sending_at",
    "success": "finished_at",
    "partial": "finished_at",
    "failed": "finished_at",
    "skipped": "finished_at",
    "queued": "last_enqueued_at",
}

MAX_ERROR_LENGTH = 4000


def check_transition(expected: str, target: str) -> None:
    if target not in TRANSITIONS.get(expected, frozenset()):
        raise IllegalTransitionError(f"an execution cannot move from {expected!r} to {target!r}")


def move(
    session: Session,
    execution_id: uuid.UUID,
    *,
    expected: str,
    target: str,
    now: datetime,
    owner: str | None = None,
    **fields: object,
) -> bool:
    """Move one execution from `expected` to `target`; False if it was not in `expected`.

    With `owner`, only while that worker holds the lease; a move out of `running` or `sending`
    gives the lease back in the same statement.
    """
    check_transition(expected, target)
    values: dict[str, object] = {"status": target, _TIMESTAMP[target]: now, **fields}
    if target == "running":
        values["attempts"] = ReportExecution.attempts + 1
    if expected in ("running", "sending") and target != expected:
        values.setdefault("lease_owner", None)
        values.setdefault("lease_expires_at", None)
    if isinstance(values.get("error"), str):
        values["error"] = values["error"][:MAX_ERROR_LENGTH]  # type: ignore[index]
    condition = [ReportExecution.id == execution_id, ReportExecution.status == expected]
    if owner is not None:
        condition.append(ReportExecution.lease_owner == owner)
    result = session.execute(
        sa.update(ReportExecution).where(*condition).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def fail(session: Session, execution_id: uuid.UUID, *, now: datetime, error: str) -> bool:
    """Fail an execution from whichever non-terminal state it is in."""
    for state in ("queued", "running", "rendered", "sending"):
        if move(session, execution_id, expected=state, target="failed", now=now, error=error):
            return True
    return False


def fail_and_notify(session: Session, execution_id: uuid.UUID, *, now: datetime, error: str) -> tuple[bool, bool]:
    """Fail a run; (failed, notices): notices is True when its webhook/chat destinations are to be told."""
    from shared.executions.ledger import insert_failure_notices

    if not fail(session, execution_id, now=now, error=error):
        return False, False
    return True, insert_failure_notices(session, execution_id)
