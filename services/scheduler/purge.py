"""The daily purge: expired files go, and so does history older than its retention period.

Files expire after BIAPP_ARTIFACT_RETENTION_DAYS: their bytes are deleted and the
artifact row is kept with `purged_at`, so the history still says what was sent
(downloads answer 410). Finished executions older than
BIAPP_EXECUTION_RETENTION_DAYS are deleted with their deliveries and files.

Work is done in batches, each its own short transaction (rows taken oldest first FOR UPDATE
SKIP LOCKED, children deleted set-wise before their execution rather than row by row through
ON DELETE CASCADE), so no lock is held for long and the API's history pages stay fast while a
large backlog goes. A batch holds its locks from its first statement to its commit, so its
size follows its time: BIAPP_PURGE_BATCH_SIZE is the largest batch, the size halves after a
batch that took longer than TARGET_S and grows back (doubling, up to that largest) after one
that took less than half of it; after each batch the purge rests half as long as the batch
took, leaving the database's CPU to the API while a large backlog goes. Expired files are
found through a partial index on `expires_at` of the files not yet purged, so the rows kept
for the history after their bytes went cost nothing. A tick stops after
BIAPP_PURGE_TIME_BUDGET_S and the next one carries on where it left off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.context import WorkerContext
from shared.db import transaction
from shared.executions import TERMINAL
from shared.models import Artifact, ArtifactChunk, Delivery, ReportExecution

log = logging.getLogger(__name__)

BATCH = 500  # the default of BIAPP_PURGE_BATCH_SIZE: the largest batch
TARGET_S = 0.25  # a batch's time (its locks) aimed at; the size halves above it and doubles below half of it
SMALLEST = 10  # batches never shrink below this many rows
REST = 0.5  # after a full batch, rest this fraction of the time it took


def next_size(size: int, took_s: float, largest: int) -> int:
    """The next batch's size after one of `size` rows took `took_s` seconds."""
    if took_s > TARGET_S:
        return max(min(SMALLEST, largest), size // 2)
    if took_s < TARGET_S / 2:
        return min(largest, size * 2)
    return size


@dataclass
class PurgeResult:
    files: int = 0
    executions: int = 0
    batches: int = 0
    finished: bool = True  # False: the time budget ran out with work left for the next tick
    batch_s: list[float] = field(default_factory=list)  # each batch's transaction, first statement to commit
    batch_rows: list[int] = field(default_factory=list)  # each batch's size (rows asked for)


def purge_expired(
    ctx: WorkerContext, *, now: datetime | None = None, budget_s: float | None = None, batch_size: int | None = None
) -> PurgeResult:
    now = now or ctx.clock.now()
    largest = batch_size or ctx.settings.purge_batch_size
    deadline = time.monotonic() + (ctx.settings.purge_time_budget_s if budget_s is None else budget_s)
    result = PurgeResult()
    cutoff = now - timedelta(days=ctx.settings.execution_retention_days)
    for step, counter in ((_purge_files, "files"), (_purge_executions, "executions")):
        size = largest  # each step adapts on its own: a file costs less than a run with its children
        while True:
            if time.monotonic() >= deadline:
                result.finished = False
                break
            began = time.perf_counter()
            done = step(ctx, now if counter == "files" else cutoff, size)
            took = time.perf_counter() - began
            result.batch_s.append(took)
            result.batch_rows.append(size)
            result.batches += 1
            setattr(result, counter, getattr(result, counter) + done)
            if done < size:
                break
            size = next_size(size, took, largest)
            time.sleep(took * REST)
        if not result.finished:
            break
    if result.files or result.executions or not result.finished:
        log.info(
            "purged %d expired files and %d old executions in %d batches (longest %.3fs)%s",
            result.files,
            result.executions,
            result.batches,
            max(result.batch_s, default=0.0),
            "" if result.finished else "; stopped at the time budget, the next purge continues",
            extra={"purged_files": result.files, "purged_executions": result.executions, "finished": result.finished},
        )
    return result


def _purge_files(ctx: WorkerContext, now: datetime, size: int) -> int:
    with transaction(ctx.session_factory) as session:
        expired = (
            session.execute(
                sa.select(Artifact)
                .where(Artifact.expires_at <= now, Artifact.purged_at.is_(None))
                .order_by(Artifact.expires_at)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        in_database = [a.id for a in expired if a.storage == "database"]
        if in_database:
            session.execute(sa.delete(ArtifactChunk).where(_one_of(session, ArtifactChunk.artifact_id, in_database)))
        for artifact in expired:
            if artifact.storage != "database":
                ctx.store.delete(session, artifact)
        if expired:
            session.execute(
                sa.update(Artifact).where(_one_of(session, Artifact.id, [a.id for a in expired])).values(purged_at=now)
            )
    return len(expired)


def _purge_executions(ctx: WorkerContext, cutoff: datetime, size: int) -> int:
    with transaction(ctx.session_factory) as session:
        ids = (
            session.execute(
                sa.select(ReportExecution.id)
                .where(
                    ReportExecution.status.in_(TERMINAL),
                    # queued_at <= finished_at: the first condition walks the history index from its oldest end.
                    ReportExecution.queued_at < cutoff,
                    sa.func.coalesce(ReportExecution.finished_at, ReportExecution.queued_at) < cutoff,
                )
                .order_by(ReportExecution.queued_at)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not ids:
            return 0
        files = (
            session.execute(
                sa.select(Artifact).where(
                    _one_of(session, Artifact.execution_id, ids),
                    Artifact.storage != "database",
                    Artifact.purged_at.is_(None),
                )
            )
            .scalars()
            .all()
        )
        for artifact in files:
            ctx.store.delete(session, artifact)
        of_these = sa.select(Artifact.id).where(_one_of(session, Artifact.execution_id, ids))
        session.execute(sa.delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(of_these)))
        session.execute(sa.delete(Artifact).where(_one_of(session, Artifact.execution_id, ids)))
        session.execute(sa.delete(Delivery).where(_one_of(session, Delivery.execution_id, ids)))
        session.execute(sa.delete(ReportExecution).where(_one_of(session, ReportExecution.id, ids)))
    return len(ids)


def _one_of(session: Session, column, values: list):
    """`column IN values`; on PostgreSQL as `= ANY(array)`, one parameter instead of one per value."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.Uuid())))
    return column.in_(values)
