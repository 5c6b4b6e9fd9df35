"""Handing a run back to the pipeline, and cancelling runs nobody wants any more."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.models import ReportExecution


def bump(session: Session, execution_id: uuid.UUID, status: str, now: datetime) -> bool:
    """Count one more hand-back of a run still in `status` (its message is then re-published)."""
    return (
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == execution_id, ReportExecution.status == status)
            .values(enqueue_count=ReportExecution.enqueue_count + 1, last_enqueued_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


def cancel_unstarted(session: Session, report_id: uuid.UUID, *, now: datetime, reason: str) -> int:
    """Skip the report's scheduled runs that have not started (queued); returns how many.

    Runs someone asked for by hand (run now, test) are theirs to keep.
    """
    return session.execute(
        sa.update(ReportExecution)
        .where(
            ReportExecution.report_id == report_id,
            ReportExecution.status == "queued",
            ReportExecution.trigger == "schedule",
        )
        .values(status="skipped", finished_at=now, error=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
