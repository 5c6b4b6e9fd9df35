"""The daily purge on PostgreSQL: expired files go, old history goes, recent work stays."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.scheduler.purge import purge_expired
from shared.db import transaction
from shared.models import Artifact, ArtifactChunk, Delivery, ReportExecution
from tests.integration import test_dispatch
from tests.integration.seeding import add_report, seed_query

env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx

NOW = datetime(2025, 1, 31, 3, 17, tzinfo=UTC)


def _run_with_file(factory, store, report_id, *, finished, expires, status="success") -> tuple[uuid.UUID, uuid.UUID]:
    with transaction(factory) as session:
        execution = ReportExecution(
            report_id=report_id,
            trigger="schedule",
            status=status,
            scheduled_for=finished - timedelta(minutes=1),
            queued_at=finished - timedelta(minutes=1),
            finished_at=finished if status != "queued" else None,
        )
        session.add(execution)
        session.flush()
        session.add(Delivery(execution_id=execution.id, recipient="a@example.com", status="sent"))
        artifact = Artifact(
            id=uuid.uuid4(),
            execution_id=execution.id,
            format="csv",
            filename="r.csv",
            content_type="text/csv",
            size=3,
            sha256="0" * 64,
            storage=store.name,
            expires_at=expires,
        )
        session.add(artifact)
        store.save(session, artifact, io.BytesIO(b"a,b"))
        return execution.id, artifact.id


def test_purge_removes_expired_files_and_history_past_retention(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp
):
    ctx = make_ctx()
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report_id = add_report(session, owner, query, now=NOW).id
    history = timedelta(days=settings.execution_retention_days)
    ancient, ancient_file = _run_with_file(
        pg_session_factory, ctx.store, report_id, finished=NOW - history - timedelta(days=1), expires=NOW - history
    )
    expired, expired_file = _run_with_file(
        pg_session_factory, ctx.store, report_id, finished=NOW - timedelta(days=40), expires=NOW - timedelta(days=10)
    )
    recent, recent_file = _run_with_file(
        pg_session_factory, ctx.store, report_id, finished=NOW - timedelta(days=1), expires=NOW + timedelta(days=29)
    )

    result = purge_expired(ctx, now=NOW)
    again = purge_expired(ctx, now=NOW)

    assert (result.files, result.executions) == (2, 1)
    assert (again.files, again.executions) == (0, 0)
    with pg_session_factory() as session:
        assert session.get(ReportExecution, ancient) is None
        assert session.execute(sa.select(Delivery).where(Delivery.execution_id == ancient)).first() is None
        assert session.get(Artifact, ancient_file) is None
        # An expired file keeps its row (the history says what was sent) but loses its bytes.
        assert session.get(ReportExecution, expired).status == "success"
        assert session.get(Artifact, expired_file).purged_at == NOW
        chunks = dict(
            session.execute(
                sa.select(ArtifactChunk.artifact_id, sa.func.count()).group_by(ArtifactChunk.artifact_id)
            ).all()
        )
        assert chunks == {recent_file: 1}
        assert session.get(Artifact, recent_file).purged_at is None
        assert session.get(ReportExecution, recent) is not None


def test_purge_never_removes_unfinished_runs(make_ctx, pg_data_database, pg_session_factory, settings, amqp):
    ctx = make_ctx()
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report_id = add_report(session, owner, query, now=NOW).id
    old = NOW - timedelta(days=settings.execution_retention_days + 30)
    queued, _ = _run_with_file(pg_session_factory, ctx.store, report_id, finished=old, expires=old, status="queued")

    assert purge_expired(ctx, now=NOW).executions == 0
    with pg_session_factory() as session:
        assert session.get(ReportExecution, queued) is not None
