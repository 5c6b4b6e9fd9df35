"""The dispatcher on real PostgreSQL and RabbitMQ: exactly once per occurrence, even when racing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.scheduler.dispatch import dispatch_due_reports
from shared.context import build_context
from shared.db import transaction
from shared.messaging import QUEUE_RENDERER, BrokerPublisher, build_broker
from shared.models import ReportExecution, ScheduledReport
from tests.conftest import queue_depth
from tests.integration.seeding import add_report, seed_query
from tests.support import base_env, make_settings


@pytest.fixture
def env(pg_url, amqp):
    return base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_LOG_FORMAT="json")


@pytest.fixture
def settings(env):
    return make_settings(**env)


@pytest.fixture
def make_ctx(settings, pg_session_factory):
    """A scheduler's WorkerContext (one broker connection per context) on the test services."""
    brokers = []

    def build():
        broker = build_broker(settings)
        brokers.append(broker)
        return build_context(settings, BrokerPublisher(broker), session_factory=pg_session_factory)

    yield build
    for broker in brokers:
        broker.close()


def _executions(factory) -> list[ReportExecution]:
    with factory() as session:
        return session.execute(sa.select(ReportExecution)).scalars().all()


def _rendered_messages(amqp_url) -> int:
    return queue_depth(amqp_url, QUEUE_RENDERER) + queue_depth(amqp_url, f"{QUEUE_RENDERER}.DQ")


def test_three_racing_dispatchers_create_exactly_one_execution_per_due_report(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp
):
    now = datetime.now(UTC).replace(microsecond=0)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        due = [add_report(session, owner, query, now=now, name=f"due {i}") for i in range(60)]
        for i, report in enumerate(due):
            # Most overdue by a few seconds, some due within the next tick (sent with a delay).
            report.next_run_at = now - timedelta(seconds=5) if i % 4 else now + timedelta(seconds=40)
        for i in range(20):
            add_report(session, owner, query, now=now, name=f"later {i}").next_run_at = now + timedelta(hours=2)
        due_ids = {r.id for r in due}
    contexts = [make_ctx() for _ in range(3)]
    barrier = threading.Barrier(3)
    results: list[list] = [[] for _ in contexts]
    errors: list[BaseException] = []

    def run(index):
        try:
            barrier.wait()
            results[index] = dispatch_due_reports(contexts[index], now=now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors

    executions = _executions(pg_session_factory)
    per_report = Counter(e.report_id for e in executions)
    assert set(per_report) == due_ids
    assert set(per_report.values()) == {1}
    published = [execution_id for result in results for execution_id, _ in result]
    assert sorted(published) == sorted(e.id for e in executions)  # each published once, by one dispatcher
    assert _rendered_messages(amqp) == 60
    with pg_session_factory() as session:
        for report in session.execute(sa.select(ScheduledReport).where(ScheduledReport.id.in_(due_ids))).scalars():
            assert report.next_run_at > now
    # Another tick at the same moment finds nothing to do.
    assert dispatch_due_reports(make_ctx(), now=now) == []
    assert len(_executions(pg_session_factory)) == 60


def test_report_overdue_by_days_runs_once_recorded_late(make_ctx, pg_data_database, pg_session_factory, settings, amqp):
    now = datetime(2024, 6, 12, 10, 30, tzinfo=UTC)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report = add_report(session, owner, query, now=now)
        report.next_run_at = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)  # the scheduler was down two days
        report_id = report.id
    ctx = make_ctx()

    sent = dispatch_due_reports(ctx, now=now)
    again = dispatch_due_reports(ctx, now=now + timedelta(minutes=1))

    assert len(sent) == 1 and again == []
    [execution] = _executions(pg_session_factory)
    assert execution.report_id == report_id
    assert execution.scheduled_for == datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
    assert execution.late is True
    assert execution.trigger == "schedule" and execution.status == "queued"
    with pg_session_factory() as session:
        assert session.get(ScheduledReport, report_id).next_run_at == datetime(2024, 6, 13, 9, 0, tzinfo=UTC)
    assert _rendered_messages(amqp) == 1


def test_a_run_due_within_the_next_tick_is_published_with_a_delay_and_not_late(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp
):
    now = datetime(2024, 6, 12, 8, 59, 20, tzinfo=UTC)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        add_report(session, owner, query, now=now)

    [(execution_id, delay_ms)] = dispatch_due_reports(make_ctx(), now=now)

    assert delay_ms == 40_000
    [execution] = _executions(pg_session_factory)
    assert execution.id == execution_id and execution.late is False
    assert execution.scheduled_for == datetime(2024, 6, 12, 9, 0, tzinfo=UTC)
    assert queue_depth(amqp, f"{QUEUE_RENDERER}.DQ") == 1


def test_paused_reports_and_manual_runs_are_left_alone(make_ctx, pg_data_database, pg_session_factory, settings, amqp):
    now = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        paused = add_report(session, owner, query, now=now, is_active=False)
        assert paused.next_run_at is None
    assert dispatch_due_reports(make_ctx(), now=now + timedelta(days=3)) == []
    assert _executions(pg_session_factory) == []


class RefusingPublisher:
    """The broker is down: every publish raises, as pika does with the connection gone."""

    def __init__(self):
        self.attempts = 0

    def send(self, actor_name, *args, delay_ms=None):
        self.attempts += 1
        raise ConnectionError("broker unreachable")


def test_a_tick_whose_publish_fails_keeps_its_runs_and_the_sweeper_sends_them(
    make_ctx, pg_data_database, pg_session_factory, settings, amqp
):
    from services.scheduler.sweep import sweep_stuck_executions

    now = datetime.now(UTC)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report = add_report(session, owner, query, now=now)
        report.next_run_at = now - timedelta(seconds=5)
    down = make_ctx()
    down.publisher = RefusingPublisher()

    sent = dispatch_due_reports(down, now=now)  # must not raise: the rows are committed

    assert len(sent) == 1 and down.publisher.attempts == 1
    [execution] = _executions(pg_session_factory)
    assert execution.status == "queued"
    assert _rendered_messages(amqp) == 0

    swept = sweep_stuck_executions(make_ctx(), now=now + timedelta(seconds=settings.stuck_queued_after_s + 1))
    assert swept.requeued == [execution.id]
    assert _rendered_messages(amqp) == 1
