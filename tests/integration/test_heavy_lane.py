"""A slow report due together with quick ones never makes them wait: it renders on the heavy queue.

Real RabbitMQ, a real `biapp worker renderer` (one process on the main queue plus the heavy one it
starts by default), a real data database. The slow report's last runs took 30 s, so it is known
to be heavy; it is published first, then the quick reports.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pika
import pytest

from shared import runs, users
from shared.db import transaction
from shared.messaging import QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, BrokerPublisher, build_broker
from shared.models import ReportExecution, SavedQuery, ScheduledReport
from tests.integration.seeding import source_on_data_database
from tests.support import Process, base_env, make_settings, wait_until

SLOW_SQL = "select 1 as answer from pg_sleep({seconds})"
QUICK_SQL = "select g as n, 'row ' || g as label from generate_series(1, 20) g"
QUICK_REPORTS = 4
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(pg_url, amqp, tmp_path):
    return base_env(
        BIAPP_DATABASE_URL=pg_url,
        BIAPP_BROKER_URL=amqp,
        BIAPP_HEAVY_RENDER_S="5",
        BIAPP_ARTIFACT_STORE=f"filesystem:{tmp_path / 'artifacts'}",
    )


def seed(session, data, slow_seconds: int) -> tuple[ScheduledReport, list[ScheduledReport], users.User]:
    owner = users.create_user(session, email="ana@example.com", password="correct horse battery", role="analyst")
    source = source_on_data_database(data, name="Data database", owner_id=owner.id)
    session.add(source)
    session.flush()

    def report(name: str, sql: str) -> ScheduledReport:
        query = SavedQuery(name=name, kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
        session.add(query)
        session.flush()
        made = ScheduledReport(
            owner_id=owner.id,
            name=name,
            saved_query_id=query.id,
            schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
            recipients=["a@example.com"],
            formats=["csv"],
        )
        session.add(made)
        session.flush()
        return made

    slow = report("Full export", SLOW_SQL.format(seconds=slow_seconds))
    for day in (1, 2, 3):  # what the renderer learns from: three earlier renders of 30 s
        started = NOW - timedelta(days=day)
        session.add(
            ReportExecution(
                report_id=slow.id,
                trigger="schedule",
                status="success",
                scheduled_for=started,
                queued_at=started,
                started_at=started,
                rendered_at=started + timedelta(seconds=30),
                finished_at=started + timedelta(seconds=31),
            )
        )
    quick = [report(f"Small report {n}", QUICK_SQL) for n in range(QUICK_REPORTS)]
    return slow, quick, owner


def consumers(amqp_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        return channel.queue_declare(queue=queue, durable=True, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        connection.close()


def publish_runs(env, session_factory, reports, owner) -> list:
    ids = []
    with transaction(session_factory) as session:
        for report in reports:
            ids.append(runs.create_execution(session, report, trigger="manual", now=NOW, requester=owner).id)
    broker = build_broker(make_settings(**env))
    try:
        publisher = BrokerPublisher(broker)
        for execution_id in ids:
            publisher.send("render_report", str(execution_id))
    finally:
        broker.close()
    return ids


def wait_rendered(session_factory, ids, timeout: float) -> dict:
    def done():
        with session_factory() as session:
            rows = {i: session.get(ReportExecution, i) for i in ids}
        return rows if all(row.status in ("rendered", "failed") for row in rows.values()) else None

    return wait_until(done, timeout=timeout, interval=0.2, what="every render")


def test_quick_reports_are_not_queued_behind_a_heavy_one(env, amqp, pg_data_database, pg_session_factory, tmp_path):
    with transaction(pg_session_factory) as session:
        slow, quick, owner = seed(session, pg_data_database, slow_seconds=10)
    # One process on the main queue: without the heavy lane the quick reports would wait 10 s for it.
    renderer = Process(["worker", "renderer", "--processes", "1", "--threads", "1"], env, log=tmp_path / "r.log")
    try:
        wait_until(
            lambda: consumers(amqp, QUEUE_RENDERER) and consumers(amqp, QUEUE_RENDERER_HEAVY),
            timeout=60,
            what="consumers on both renderer queues",
        )
        slow_id, *quick_ids = publish_runs(env, pg_session_factory, [slow, *quick], owner)
        rows = wait_rendered(pg_session_factory, [slow_id, *quick_ids], timeout=90)
    finally:
        renderer.stop()
    log = renderer.output()
    assert all(row.status == "rendered" for row in rows.values()), log[-3000:]
    heavy = rows[slow_id]
    for execution_id in quick_ids:
        small = rows[execution_id]
        # Each quick report was done while the export was still running, a few seconds after it was queued.
        assert small.rendered_at < heavy.rendered_at, (small.rendered_at, heavy.started_at, heavy.rendered_at)
        assert small.rendered_at < heavy.started_at + timedelta(seconds=8)
    assert "forwarded to biapp.renderer.heavy: recent renders took 30 s" in log


def test_a_heavy_report_renders_on_the_main_queue_when_no_heavy_worker_runs(
    env, amqp, pg_data_database, pg_session_factory, tmp_path
):
    with transaction(pg_session_factory) as session:
        slow, quick, owner = seed(session, pg_data_database, slow_seconds=1)
    renderer = Process(
        ["worker", "renderer", "--lane", "main", "--processes", "1", "--threads", "1"], env, log=tmp_path / "r.log"
    )
    try:
        wait_until(lambda: consumers(amqp, QUEUE_RENDERER), timeout=60, what="a consumer on the main queue")
        ids = publish_runs(env, pg_session_factory, [slow, quick[0]], owner)
        rows = wait_rendered(pg_session_factory, ids, timeout=60)
    finally:
        renderer.stop()
    log = renderer.output()
    assert all(row.status == "rendered" for row in rows.values()), log[-3000:]
    assert consumers(amqp, QUEUE_RENDERER_HEAVY) == 0
    assert "heavy report rendered on the main queue: nothing consumes biapp.renderer.heavy" in log
