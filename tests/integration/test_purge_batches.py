"""The retention purge in bounded batches on PostgreSQL: everything expired goes, across batches and ticks."""

from __future__ import annotations

import dataclasses
import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.scheduler import purge
from services.scheduler.purge import purge_expired
from shared.db import transaction
from shared.models import Artifact, ArtifactChunk, Delivery, ReportExecution
from tests.integration import test_dispatch
from tests.integration.seeding import add_report, seed_query

env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx

NOW = datetime(2025, 1, 31, 3, 17, tzinfo=UTC)


def _seed(factory, store, report_id, *, old: int, recent: int, retention_days: int) -> tuple[set, set]:
    """`old` finished runs past retention and `recent` ones within it, each with two deliveries and a stored file."""
    old_ids, kept_ids = set(), set()
    with transaction(factory) as session:
        for i in range(old + recent):
            finished = NOW - timedelta(days=retention_days + 1 + i) if i < old else NOW - timedelta(days=1, minutes=i)
            execution = ReportExecution(
                report_id=report_id,
                trigger="manual",
                status="success" if i % 2 else "failed",
                scheduled_for=finished - timedelta(minutes=2),
                queued_at=finished - timedelta(minutes=2),
                finished_at=finished,
            )
            session.add(execution)
            session.flush()
            (old_ids if i < old else kept_ids).add(execution.id)
            for address in ("a@example.com", "b@example.com"):
                session.add(Delivery(execution_id=execution.id, recipient=address, status="sent"))
            artifact = Artifact(
                id=uuid.uuid4(),
                execution_id=execution.id,
                format="csv",
                filename="r.csv",
                content_type="text/csv",
                size=3,
                sha256="0" * 64,
                storage=store.name,
                expires_at=finished + timedelta(days=30),
            )
            session.add(artifact)
            store.save(session, artifact, io.BytesIO(b"a,b"))
        # An old run still queued is not history yet: the sweeper settles it first.
        stuck = ReportExecution(
            report_id=report_id,
            trigger="manual",
            status="queued",
            scheduled_for=NOW - timedelta(days=retention_days + 5),
            queued_at=NOW - timedelta(days=retention_days + 5),
        )
        session.add(stuck)
        session.flush()
        kept_ids.add(stuck.id)
    return old_ids, kept_ids


def _counts(factory) -> dict[str, int]:
    with factory() as session:
        return {
            model.__tablename__: session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
            for model in (ReportExecution, Delivery, Artifact, ArtifactChunk)
        }


def test_a_small_batch_size_purges_every_expired_run_with_its_children_across_batches(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp
):
    ctx = make_ctx()
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report_id = add_report(session, owner, query, now=NOW).id
    _, kept = _seed(pg_session_factory, ctx.store, report_id, old=25, recent=5, retention_days=365)

    result = purge_expired(ctx, now=NOW, batch_size=7)

    assert result.finished and result.executions == 25
    assert result.batches >= 4 + 4  # files (25 expired of the old runs) and executions, 7 at a time
    with pg_session_factory() as session:
        left = set(session.execute(sa.select(ReportExecution.id)).scalars())
        files = session.execute(sa.select(Artifact.execution_id, Artifact.purged_at)).all()
    assert left == kept
    assert {execution_id for execution_id, _ in files} < kept  # the recent runs' files (the stuck run has none)
    assert all(purged is None for _, purged in files)  # the recent runs' files have not expired
    assert _counts(pg_session_factory) == {
        "report_executions": 6,
        "deliveries": 10,
        "artifacts": 5,
        "artifact_chunks": 5,
    }
    assert purge_expired(ctx, now=NOW, batch_size=7).executions == 0


def test_a_purge_tick_stops_at_its_time_budget_and_the_next_one_finishes(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp, monkeypatch
):
    ctx = make_ctx()
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, purge_batch_size=5))
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report_id = add_report(session, owner, query, now=NOW).id
    _seed(pg_session_factory, ctx.store, report_id, old=20, recent=2, retention_days=365)
    ticking = itertools.count(0.0, 1.0)  # every look at the clock: one second later
    monkeypatch.setattr(purge.time, "monotonic", lambda: next(ticking))

    first = purge_expired(ctx, now=NOW, budget_s=3.5)

    assert not first.finished and first.batches == 3
    assert first.files + first.executions == 15
    monkeypatch.undo()
    second = purge_expired(ctx, now=NOW)
    assert second.finished
    assert first.executions + second.executions == 20
    assert _counts(pg_session_factory)["report_executions"] == 3
    assert _counts(pg_session_factory)["deliveries"] == 4


def test_the_batch_size_follows_the_batch_time_between_the_smallest_and_the_largest():
    from services.scheduler.purge import TARGET_S, next_size

    assert next_size(500, TARGET_S * 2, 500) == 250  # a slow batch: halve
    assert next_size(250, TARGET_S / 4, 500) == 500  # a quick one: double, up to the largest
    assert next_size(500, TARGET_S / 4, 500) == 500
    assert next_size(400, TARGET_S * 0.75, 500) == 400  # near the target: keep
    assert next_size(12, 30.0, 500) == 10  # never below the smallest
    assert next_size(5, 30.0, 5) == 5  # unless the largest is smaller still
