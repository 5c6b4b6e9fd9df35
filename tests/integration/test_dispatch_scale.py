"""The dispatcher at scale on PostgreSQL and RabbitMQ: batches, racing replicas, batched publishing."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import dramatiq
import pika
import pytest
import sqlalchemy as sa

from services.scheduler.dispatch import DispatchStats, dispatch_due_reports
from shared.context import build_context
from shared.db import transaction
from shared.messaging import QUEUE_RENDERER, RENDER_REPORT, BrokerPublisher, build_broker, publish_many_after_commit
from shared.models import Destination, ReportExecution, ScheduledReport
from tests.conftest import queue_depth
from tests.integration import test_dispatch
from tests.integration.seeding import seed_query

env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx

NOW = datetime(2025, 3, 3, 9, 0, 20, tzinfo=UTC)
DUE_AT = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def _seed_due(factory, owner_id, query_id, count: int, *, later: int = 0) -> set[uuid.UUID]:
    """`count` reports due at 09:00 (a few shared schedules), `later` due tomorrow; one email destination each."""
    schedules = [
        {"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        {"frequency": "daily", "time": "10:00", "timezone": "Europe/Berlin"},
        {"frequency": "cron", "cron": "0 9 * * 1-5", "timezone": "UTC"},
    ]
    reports, destinations = [], []
    for i in range(count + later):
        report_id = uuid.uuid4()
        reports.append(
            {
                "id": report_id,
                "owner_id": owner_id,
                "name": f"report {i}",
                "saved_query_id": query_id,
                "schedule": schedules[i % len(schedules)],
                "timezone": schedules[i % len(schedules)]["timezone"],
                "formats": ["csv"],
                "is_active": True,
                "next_run_at": DUE_AT if i < count else DUE_AT + timedelta(days=1),
            }
        )
        address = f"r{i}@example.com"
        destinations.append({"id": uuid.uuid4(), "report_id": report_id, "kind": "email", "address": address})
        destinations[-1].update(role="to", target=address, position=0)
    with transaction(factory) as session:
        session.execute(sa.insert(ScheduledReport), reports)
        session.execute(sa.insert(Destination), destinations)
    return {r["id"] for r in reports[:count]}


def _rendered_messages(amqp_url) -> int:
    return queue_depth(amqp_url, QUEUE_RENDERER) + queue_depth(amqp_url, f"{QUEUE_RENDERER}.DQ")


def _ctx_with(settings, factory, **changes):
    broker = build_broker(dataclasses.replace(settings, **changes))
    return build_context(dataclasses.replace(settings, **changes), BrokerPublisher(broker), session_factory=factory)


def test_a_tick_with_more_due_reports_than_its_batch_size_dispatches_each_once_in_batches(
    pg_data_database, pg_session_factory, settings, amqp
):
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    due = _seed_due(pg_session_factory, owner, query, 130, later=20)
    ctx = _ctx_with(settings, pg_session_factory, dispatch_batch_size=50)
    stats = DispatchStats()

    sent = dispatch_due_reports(ctx, now=NOW, stats=stats)

    assert len(sent) == 130
    assert stats.batches == 3 and stats.claimed == 130 and stats.created == 130 and stats.published == 130
    assert len(stats.batch_s) == 3 and all(phase >= 0 for phase in stats.phases().values())
    with pg_session_factory() as session:
        executions = session.execute(sa.select(ReportExecution)).scalars().all()
        advanced = session.execute(sa.select(ScheduledReport).where(ScheduledReport.id.in_(due))).scalars().all()
    assert Counter(e.report_id for e in executions) == Counter(due)
    assert {e.scheduled_for for e in executions} == {DUE_AT}
    assert all(e.status == "queued" and e.trigger == "schedule" and not e.late for e in executions)
    assert all(e.recipients and e.recipients[0]["address"].startswith("r") for e in executions)
    assert all(r.next_run_at > NOW for r in advanced)
    assert _rendered_messages(amqp) == 130
    assert dispatch_due_reports(ctx, now=NOW) == []
    ctx.publisher.broker.close()


def test_two_concurrent_ticks_over_two_thousand_due_reports_start_each_once(
    pg_data_database, pg_session_factory, settings, amqp
):
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    due = _seed_due(pg_session_factory, owner, query, 2000)
    contexts = [_ctx_with(settings, pg_session_factory, dispatch_batch_size=300) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[list] = [[], []]
    errors: list[BaseException] = []

    def run(index):
        try:
            barrier.wait()
            results[index] = dispatch_due_reports(contexts[index], now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors

    with pg_session_factory() as session:
        executions = session.execute(sa.select(ReportExecution.id, ReportExecution.report_id)).all()
    assert len(executions) == 2000
    assert Counter(e.report_id for e in executions) == Counter(due)
    published = [execution_id for result in results for execution_id, _ in result]
    assert sorted(published) == sorted(e.id for e in executions)
    assert _rendered_messages(amqp) == 2000
    for ctx in contexts:
        ctx.publisher.broker.close()


def test_batched_messages_are_the_ones_dramatiq_workers_consume(settings, amqp):
    broker = build_broker(settings)
    try:
        publisher = BrokerPublisher(broker)
        now_id, later_id = uuid.uuid4(), uuid.uuid4()

        assert publish_many_after_commit(publisher, RENDER_REPORT, [(now_id, None), (later_id, 30_000)]) == 2

        connection = pika.BlockingConnection(pika.URLParameters(amqp))
        try:
            channel = connection.channel()
            _, properties, body = channel.basic_get(QUEUE_RENDERER, auto_ack=True)
            message = dramatiq.Message.decode(body)
            assert (message.queue_name, message.actor_name, message.args) == (
                QUEUE_RENDERER,
                RENDER_REPORT,
                (str(now_id),),
            )
            assert properties.delivery_mode == 2
            _, _, body = channel.basic_get(f"{QUEUE_RENDERER}.DQ", auto_ack=True)
            delayed = json.loads(body)
            assert delayed["queue_name"] == f"{QUEUE_RENDERER}.DQ" and delayed["args"] == [str(later_id)]
            assert delayed["options"]["eta"] > 0
        finally:
            connection.close()
    finally:
        broker.close()


def test_a_refused_batch_is_logged_and_left_to_the_sweeper(caplog):
    class Refusing:
        def send_many(self, actor_name, items):
            raise pika.exceptions.AMQPConnectionError("broker gone")

    assert publish_many_after_commit(Refusing(), RENDER_REPORT, [(uuid.uuid4(), None)]) == 0
    assert any("re-enqueues runs left queued" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("size", ["0", "10001", "many"])
def test_a_bad_dispatch_batch_size_stops_the_service_with_one_line(size):
    from shared.config import ConfigError
    from tests.support import make_settings

    with pytest.raises(ConfigError, match=r"^BIAPP_DISPATCH_BATCH_SIZE must be"):
        make_settings(BIAPP_DISPATCH_BATCH_SIZE=size)


def test_a_failing_batch_still_lets_the_committed_batches_messages_go_out(
    pg_data_database, pg_session_factory, settings, amqp, monkeypatch
):
    from services.scheduler import dispatch

    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    _seed_due(pg_session_factory, owner, query, 120)
    ctx = _ctx_with(settings, pg_session_factory, dispatch_batch_size=50)
    claim, calls = dispatch._claim, []

    def failing_second_claim(session, until, size):
        calls.append(size)
        if len(calls) == 2:
            raise RuntimeError("database gone")
        return claim(session, until, size)

    monkeypatch.setattr(dispatch, "_claim", failing_second_claim)
    with pytest.raises(RuntimeError, match="database gone"):
        dispatch_due_reports(ctx, now=NOW)

    with pg_session_factory() as session:
        committed = session.execute(sa.select(sa.func.count()).select_from(ReportExecution)).scalar_one()
    assert committed == 50
    assert _rendered_messages(amqp) == 50  # the first batch's, published on the publishing thread
    monkeypatch.undo()
    assert len(dispatch_due_reports(ctx, now=NOW)) == 70  # the rest on the next tick, each once
    assert _rendered_messages(amqp) == 120
    ctx.publisher.broker.close()
