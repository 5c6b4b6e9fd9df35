"""The sweeper on real PostgreSQL and RabbitMQ: lost messages and killed workers never leave a run stuck."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.scheduler.sweep import MAX_ENQUEUES, sweep_stuck_executions
from shared.db import transaction
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER
from shared.models import Delivery, ReportExecution
from tests.conftest import queue_depth
from tests.integration import test_dispatch
from tests.integration.seeding import add_report, seed_query
from tests.support import Process, wait_until

# The same real-service fixtures as the dispatcher tests.
env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx

TERMINAL = ("success", "partial", "failed", "skipped")


@pytest.fixture
def report_id(pg_data_database, pg_session_factory, settings, smtp_server):
    owner, query = seed_query(pg_session_factory, pg_data_database, settings, smtp=smtp_server)
    with transaction(pg_session_factory) as session:
        return add_report(session, owner, query, now=datetime.now(UTC)).id


def insert_execution(factory, report_id, *, status="queued", age=timedelta(0), **fields) -> uuid.UUID:
    """An execution as the pipeline would have left it `age` ago."""
    at = datetime.now(UTC) - age
    values = {
        "report_id": report_id,
        "trigger": "manual",
        "status": status,
        "scheduled_for": at,
        "queued_at": at,
        "last_enqueued_at": at,
        "recipients": [{"address": "a@example.com", "kind": "to"}],
    }
    values.update(fields)
    with transaction(factory) as session:
        execution = ReportExecution(**values)
        session.add(execution)
        session.flush()
        return execution.id


def load(factory, execution_id) -> ReportExecution:
    with factory() as session:
        return session.get(ReportExecution, execution_id)


# --- verdicts on the database and broker ----------------------------------------------


def test_a_queued_run_within_its_threshold_or_not_yet_due_is_left_alone(make_ctx, pg_session_factory, report_id, amqp):
    fresh = insert_execution(pg_session_factory, report_id, age=timedelta(seconds=30))
    delayed = insert_execution(
        pg_session_factory,
        report_id,
        age=timedelta(minutes=10),
        scheduled_for=datetime.now(UTC) + timedelta(seconds=50),
    )
    # A transient render failure waits in the delay queue for its retry: not lost yet.
    retrying = insert_execution(pg_session_factory, report_id, age=timedelta(minutes=5), attempts=1)

    ctx = make_ctx()
    ctx.settings = replace(ctx.settings, stuck_queued_after_s=120, max_backoff_s=600)

    result = sweep_stuck_executions(ctx)

    assert not result
    for execution_id in (fresh, delayed, retrying):
        assert load(pg_session_factory, execution_id).enqueue_count == 1


def test_a_lost_queued_run_is_published_again_with_growing_intervals(make_ctx, pg_session_factory, report_id, amqp):
    lost = insert_execution(pg_session_factory, report_id, age=timedelta(minutes=3))
    ctx = make_ctx()

    first = sweep_stuck_executions(ctx)
    second = sweep_stuck_executions(ctx, now=datetime.now(UTC) + timedelta(minutes=3))  # < 2 x 120 s later
    third = sweep_stuck_executions(ctx, now=datetime.now(UTC) + timedelta(minutes=5))

    assert first.requeued == [lost] and not second and third.requeued == [lost]
    assert load(pg_session_factory, lost).enqueue_count == 3
    assert queue_depth(amqp, QUEUE_RENDERER) == 2


def test_a_run_nobody_ever_picks_up_is_failed_with_a_clear_error(make_ctx, pg_session_factory, report_id, amqp):
    lost = insert_execution(pg_session_factory, report_id, age=timedelta(hours=30), enqueue_count=MAX_ENQUEUES)

    result = sweep_stuck_executions(make_ctx())

    assert result.failed == [lost]
    execution = load(pg_session_factory, lost)
    assert execution.status == "failed" and execution.finished_at is not None
    assert "never started" in execution.error and "renderer" in execution.error


def test_a_render_whose_lease_ran_out_is_handed_on_after_one_more_lease_period(
    make_ctx, pg_session_factory, settings, report_id, amqp
):
    """A renderer that stopped renewing is taken over without waiting for any time limit; it first gets one
    more lease period, because right after a database outage a live renderer's lease looks expired too."""
    from services.renderer.render import render_execution

    now = datetime.now(UTC)
    dead = insert_execution(
        pg_session_factory,
        report_id,
        status="running",
        age=timedelta(seconds=40),
        attempts=1,
        started_at=now - timedelta(seconds=40),
        lease_owner="renderer-1:dead",
        lease_expires_at=now - timedelta(seconds=1),
    )
    alive = insert_execution(
        pg_session_factory,
        report_id,
        status="running",
        age=timedelta(minutes=5),
        attempts=1,
        started_at=now - timedelta(minutes=5),
        lease_owner="renderer-2:alive",
        lease_expires_at=now + timedelta(seconds=20),
    )

    result = sweep_stuck_executions(make_ctx(), now=now)

    assert result.requeued == [dead]
    execution = load(pg_session_factory, dead)
    assert execution.status == "running" and execution.enqueue_count == 2
    assert execution.lease_owner == "renderer-1:dead" and execution.lease_expires_at > now, "one more period"
    assert load(pg_session_factory, alive).status == "running"
    assert queue_depth(amqp, QUEUE_RENDERER) == 1

    # Nobody renewed it: the message that arrives when the period is over takes the run over.
    with transaction(pg_session_factory) as session:
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == dead)
            .values(lease_expires_at=now - timedelta(seconds=1))
        )
    render_execution(make_ctx(), str(dead))
    execution = load(pg_session_factory, dead)
    assert execution.status == "rendered" and execution.attempts == 2


def test_a_render_without_a_lease_past_its_time_limit_is_queued_again(
    make_ctx, pg_session_factory, settings, report_id, amqp
):
    """Runs started before leases existed fall back on the time limit."""
    stuck_for = timedelta(seconds=settings.render_time_limit_s + 60)
    stuck = insert_execution(pg_session_factory, report_id, status="running", age=stuck_for, attempts=1)
    stuck_for = timedelta(seconds=settings.render_time_limit_s - 60)
    busy = insert_execution(pg_session_factory, report_id, status="running", age=stuck_for, attempts=1)

    result = sweep_stuck_executions(make_ctx())

    assert result.requeued == [stuck]
    assert load(pg_session_factory, busy).status == "running"


def test_a_render_still_renewing_its_lease_past_the_time_limit_is_failed(
    make_ctx, pg_session_factory, settings, report_id, amqp
):
    """Hung in C code (a layout that never ends) yet alive: nothing stays running forever."""
    age = timedelta(seconds=settings.render_time_limit_s + 60)
    hung = insert_execution(
        pg_session_factory,
        report_id,
        status="running",
        age=age,
        attempts=1,
        started_at=datetime.now(UTC) - age,
        lease_owner="renderer-1:hung",
        lease_expires_at=datetime.now(UTC) + timedelta(seconds=20),
    )

    result = sweep_stuck_executions(make_ctx())

    assert result.failed == [hung]
    execution = load(pg_session_factory, hung)
    assert execution.status == "failed" and f"time limit of {settings.render_time_limit_s} s" in execution.error
    assert queue_depth(amqp, QUEUE_RENDERER) == 0


def test_a_render_lost_after_its_last_attempt_is_failed(make_ctx, pg_session_factory, settings, report_id, amqp):
    attempts = settings.render_max_retries + 1
    now = datetime.now(UTC)
    stuck = insert_execution(
        pg_session_factory,
        report_id,
        status="running",
        attempts=attempts,
        lease_owner="renderer-1:dead",
        lease_expires_at=now - timedelta(seconds=5),
    )

    result = sweep_stuck_executions(make_ctx())

    assert result.failed == [stuck]
    execution = load(pg_session_factory, stuck)
    assert execution.status == "failed"
    assert f"after {attempts} attempt(s)" in execution.error and "killed" in execution.error
    assert queue_depth(amqp, QUEUE_RENDERER) == 0


def test_a_rendered_run_whose_mail_message_was_lost_is_sent_to_the_mailer_again(
    make_ctx, pg_session_factory, report_id, amqp
):
    age = timedelta(minutes=5)
    lost = insert_execution(
        pg_session_factory, report_id, status="rendered", age=age, rendered_at=datetime.now(UTC) - age
    )

    result = sweep_stuck_executions(make_ctx())

    assert result.redelivered == [lost]
    assert load(pg_session_factory, lost).status == "rendered"
    assert queue_depth(amqp, QUEUE_MAILER) == 1


def test_sending_runs_are_left_to_a_mailer_holding_the_lease(make_ctx, pg_session_factory, settings, report_id, amqp):
    age = timedelta(seconds=settings.mail_time_limit_s + settings.max_backoff_s + 120)
    insert_execution(  # held by a live mailer
        pg_session_factory,
        report_id,
        status="sending",
        age=age,
        sending_at=datetime.now(UTC) - age,
        lease_owner="mailer-1",
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    abandoned = insert_execution(
        pg_session_factory,
        report_id,
        status="sending",
        age=age,
        sending_at=datetime.now(UTC) - age,
        lease_owner="mailer-2",
        lease_expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )

    result = sweep_stuck_executions(make_ctx())

    assert result.redelivered == [abandoned]
    assert queue_depth(amqp, QUEUE_MAILER) == 1


def test_an_abandoned_sending_run_is_finally_closed_from_its_ledger(make_ctx, pg_session_factory, settings, report_id):
    age = timedelta(hours=3)
    execution_id = insert_execution(
        pg_session_factory,
        report_id,
        status="sending",
        age=age,
        sending_at=datetime.now(UTC) - age,
        enqueue_count=MAX_ENQUEUES,
        recipients=[{"address": "a@example.com", "kind": "to"}, {"address": "b@example.com", "kind": "to"}],
    )
    with transaction(pg_session_factory) as session:
        old = datetime.now(UTC) - age
        session.add(
            Delivery(execution_id=execution_id, recipient="a@example.com", status="sent", sent_at=old, updated_at=old)
        )
        session.add(Delivery(execution_id=execution_id, recipient="b@example.com", status="pending", updated_at=old))

    sweep_stuck_executions(make_ctx())

    execution = load(pg_session_factory, execution_id)
    assert execution.status == "partial" and execution.finished_at is not None
    with pg_session_factory() as session:
        statuses = dict(
            session.execute(
                sa.select(Delivery.recipient, Delivery.status).where(Delivery.execution_id == execution_id)
            ).all()
        )
    assert statuses == {"a@example.com": "sent", "b@example.com": "failed"}


# --- with real worker processes ---------------------------------------------------------


def start_worker(service: str, worker_env: dict, tmp_path, name: str) -> Process:
    # One Dramatiq master, as a renderer pod runs it (`--lane main`), so a SIGKILL of its process group kills
    # the render in progress; the default lane supervises two masters that would finish it on SIGTERM instead.
    lane = ["--lane", "main"] if service == "renderer" else []
    return Process(
        ["worker", service, *lane, "--processes", "1", "--threads", "1"], worker_env, log=tmp_path / f"{name}.log"
    )


def _finished(factory, execution_id):
    execution = load(factory, execution_id)
    return execution if execution.status in TERMINAL else None


def test_a_published_then_lost_run_is_requeued_by_the_sweeper_and_completes(
    env, make_ctx, pg_session_factory, report_id, smtp_server, tmp_path, amqp
):
    renderer = start_worker("renderer", env, tmp_path, "renderer")
    mailer = start_worker("mailer", env, tmp_path, "mailer")
    try:
        # The commit happened, the publish did not: the run sits queued with no message anywhere.
        lost = insert_execution(pg_session_factory, report_id, age=timedelta(minutes=3))
        time.sleep(1)
        assert load(pg_session_factory, lost).status == "queued"

        assert sweep_stuck_executions(make_ctx()).requeued == [lost]

        execution = wait_until(lambda: _finished(pg_session_factory, lost), timeout=60, what="the run to finish")
        assert execution.status == "success", execution.error
        assert execution.attempts == 1 and execution.enqueue_count == 2
        assert [m.recipients for m in smtp_server.wait_for(1)] == [["a@example.com"]]
    finally:
        renderer.stop()
        mailer.stop()


def test_a_renderer_killed_mid_render_is_taken_over_when_its_lease_runs_out(
    env, make_ctx, pg_url, pg_session_factory, report_id, smtp_server, tmp_path, amqp
):
    """SIGKILL mid-render: RabbitMQ redelivers the message, the next worker waits out the dead lease and
    finishes the run, without the sweeper and without a second email."""
    with transaction(pg_session_factory) as session:
        session.execute(sa.text("update saved_queries set sql = 'select pg_sleep(4) as waited, 1 as one'"))
    worker_env = {**env, "BIAPP_LEASE_TTL_S": "6"}
    mailer = start_worker("mailer", worker_env, tmp_path, "mailer")
    doomed = start_worker("renderer", worker_env, tmp_path, "renderer-1")
    survivor = None
    try:
        execution_id = insert_execution(pg_session_factory, report_id)
        make_ctx().publisher.send("render_report", str(execution_id))
        wait_until(lambda: load(pg_session_factory, execution_id).status == "running", timeout=30, what="render start")
        time.sleep(1)  # inside pg_sleep
        doomed.signal(signal.SIGKILL)
        doomed.stop()
        killed_at = time.monotonic()

        survivor = start_worker("renderer", worker_env, tmp_path, "renderer-2")
        execution = wait_until(
            lambda: _finished(pg_session_factory, execution_id), timeout=90, what="the run to finish"
        )
        recovery = time.monotonic() - killed_at
        print(f"renderer SIGKILL: run finished {recovery:.1f} s after the kill (lease 6 s)")
        assert execution.status == "success", execution.error
        assert execution.attempts == 2 and execution.row_count == 1
        assert "postponed (busy)" in survivor.output()
        assert recovery < 60
        assert len(smtp_server.wait_for(1)) == 1
        time.sleep(1)
        assert len(smtp_server.messages) == 1
    finally:
        for process in (doomed, survivor, mailer):
            if process is not None:
                process.stop()
