"""The daily purge: expired files go, and so does history older than its retention period.

Files expire after BIAPP_ARTIFACT_RETENTION_DAYS: their bytes are deleted and the
artifact row is kept with `purged_at`, so the history still says what was sent
(downloads answer 410). Finished executions older than
BIAPP_EXECUTION_RETENTION_DAYS are deleted with their deliveries and files.
Work is done in small batches so one purge never holds long locks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from shared.context import WorkerContext
from shared.db import transaction
from shared.executions import TERMINAL
from shared.models import Artifact, ReportExecution
from shared.reports import delete_artifact_files

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class PurgeResult:
    files: int = 0
    executions: int = 0


def purge_expired(ctx: WorkerContext, *, now: datetime | None = None) -> PurgeResult:
    now = now or ctx.clock.now()
    result = PurgeResult()
    while batch := _purge_files(ctx, now):
        result.files += batch
    cutoff = now - timedelta(days=ctx.settings.execution_retention_days)
    while batch := _purge_executions(ctx, cutoff):
        result.executions += batch
    if result.files or result.executions:
        log.info("purged %d expired files and %d old executions", result.files, result.executions)
    return result


def _purge_files(ctx: WorkerContext, now: datetime) -> int:
    with transaction(ctx.session_factory) as session:
        expired = (
            session.execute(
                sa.select(Artifact)
                .where(Artifact.expires_at <= now, Artifact.purged_at.is_(None))
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for artifact in expired:
            ctx.store.delete(session, artifact)
            artifact.purged_at = now
    return len(expired)


def _purge_executions(ctx: WorkerContext, cutoff: datetime) -> int:
    with transaction(ctx.session_factory) as session:
        ids = (
            session.execute(
                sa.select(ReportExecution.id)
                .where(
                    ReportExecution.status.in_(TERMINAL),
                    sa.func.coalesce(ReportExecution.finished_at, ReportExecution.queued_at) < cutoff,
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if ids:
            delete_artifact_files(session, ctx.store, ids)
            session.execute(sa.delete(ReportExecution).where(ReportExecution.id.in_(ids)))
    return len(ids)
