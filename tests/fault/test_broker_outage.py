"""RabbitMQ goes away under a real `biapp scheduler`: the process stays up and dispatches once it is back.

The broker is a private node (tests/fault/conftest.py); PostgreSQL is the shared server with a database
of the test's own. No renderer runs: a dispatched report shows as its execution row plus a
`render_report` message waiting in `biapp.renderer`.

periodiq ticks on the minute, so the outage is placed around a minute boundary: the tick at that
minute is refused by the (stopped) broker. `make test` runs a 45 s outage that ends inside that tick's
retry window (services/cli.py send_ticks: 40 s); `make chaos` runs 90 s, which outlasts the window:
that tick is given up and a later one brings the run out.
"""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.messaging import QUEUE_RENDERER, QUEUE_SCHEDULER
from shared.models import ReportExecution, ScheduledReport
from tests.fault.support import (
    all_pids,
    current_children,
    messages,
    parent_of,
    sleep_until,
    start_scheduler,
    wait_for_scheduler,
)
from tests.integration.seeding import add_report, seed_query
from tests.support import base_env, make_settings, wait_until


def outage_start(earliest: float, lead: tuple[float, float]) -> float:
    """The first moment from `earliest` that is between lead[0] and lead[1] seconds before a minute.

    A 45 s outage led by 15-40 s ends while the tick at that minute is still being retried (40 s);
    a 90 s outage led by 15-45 s outlasts that tick's retries, so a later tick brings the run out.
    """
    shortest, longest = lead
    tick = math.ceil((earliest + shortest) / 60) * 60
    return max(earliest, tick - longest)


@pytest.fixture
def env(fault_database, private_rabbit):
    url, _ = fault_database
    vhost = "biapp"
    amqp = private_rabbit.add_vhost(vhost)
    return base_env(BIAPP_DATABASE_URL=url, BIAPP_BROKER_URL=amqp, BIAPP_LOG_FORMAT="json")


def run_outage(
    outage_s: float, lead: tuple[float, float], env, fault_database, private_rabbit, pg_data_database, tmp_path
) -> None:
    _, factory = fault_database
    vhost = "biapp"
    settings = make_settings(**env)
    owner, query = seed_query(factory, pg_data_database, settings)
    print(f"\nprivate RabbitMQ node {private_rabbit.node} started in {private_rabbit.started_in:.1f}s")

    scheduler = start_scheduler(env, tmp_path)
    try:
        wait_for_scheduler(scheduler, private_rabbit, vhost)
        supervisor_pid = scheduler.proc.pid

        stop_at = outage_start(time.time() + 1, lead)
        sleep_until(stop_at, scheduler)
        down_at = time.monotonic()
        private_rabbit.stop()
        print(f"broker stopped at :{datetime.now(UTC):%S} for {outage_s}s (the tick at :00 falls in the outage)")

        # A report that falls due while the broker is away (nothing can dispatch it before it is back).
        with transaction(factory) as session:
            report = add_report(session, owner, query, now=datetime.now(UTC), name="Due in the outage")
            report.next_run_at = datetime.now(UTC).replace(microsecond=0)
            report_id, due = report.id, report.next_run_at

        sleep_until(time.time() + outage_s - (time.monotonic() - down_at), scheduler)
        started_in = private_rabbit.start()
        back_at = time.monotonic()
        print(f"broker back after {back_at - down_at - started_in:.1f}s down (+{started_in:.1f}s to start it)")

        def dispatched():
            assert scheduler.proc.poll() is None, f"biapp scheduler exited:\n{scheduler.output()[-3000:]}"
            with factory() as session:
                return session.execute(sa.select(ReportExecution).filter_by(report_id=report_id)).scalars().all()

        [execution] = wait_until(dispatched, timeout=100, interval=0.2, what="the report to be dispatched")
        recovery_s = time.monotonic() - back_at
        print(f"recovery: first dispatch {recovery_s:.1f}s after the broker was back")

        assert execution.trigger == "schedule" and execution.scheduled_for == due
        assert execution.status == "queued"  # no renderer in this test
        wait_until(lambda: private_rabbit.queue_depth(vhost, QUEUE_RENDERER) >= 1, timeout=10, what="render message")
        with factory() as session:
            assert session.get(ScheduledReport, report_id).next_run_at > due

        # The same supervisor all along, and every child it names is running under it.
        assert scheduler.proc.poll() is None and scheduler.proc.pid == supervisor_pid
        children = current_children(scheduler)
        assert set(children) == {"worker", "emitter"}
        assert all(parent_of(pid) == supervisor_pid for pid in children.values()), children
        assert messages(scheduler, r"not sent, broker unreachable"), "the emitter never saw the outage"
        restarts = messages(scheduler, r"exited unexpectedly")
        for entry in restarts:
            print("restart:", entry["message"])
        print(
            f"children restarted {len(restarts)} times; emitter:",
            [e["message"] for e in messages(scheduler, r"ticks for ")],
        )

        assert scheduler.stop(timeout=60) == 0  # and it still stops cleanly on SIGTERM
    finally:
        scheduler.stop()


def test_scheduler_survives_a_45s_broker_outage_and_dispatches_what_fell_due(
    env, fault_database, private_rabbit, pg_data_database, tmp_path
):
    run_outage(45, (15, 40), env, fault_database, private_rabbit, pg_data_database, tmp_path)


@pytest.mark.chaos
def test_scheduler_survives_a_90s_broker_outage_and_dispatches_what_fell_due(
    env, fault_database, private_rabbit, pg_data_database, tmp_path
):
    run_outage(90, (15, 45), env, fault_database, private_rabbit, pg_data_database, tmp_path)


def test_scheduler_restarts_a_child_that_dies_and_stays_up(env, private_rabbit, tmp_path):
    """SIGKILL both children of a real `biapp scheduler`: each is restarted, the supervisor never exits."""
    scheduler = start_scheduler(env, tmp_path)
    try:
        wait_for_scheduler(scheduler, private_rabbit, "biapp")
        before = current_children(scheduler)
        worker_processes = [pid for pid in all_pids() if parent_of(pid) == before["worker"]]
        assert worker_processes, "the dramatiq master has no worker process"

        for pid in before.values():
            os.kill(pid, signal.SIGKILL)

        wait_until(
            lambda: all(current_children(scheduler).get(name) not in (None, pid) for name, pid in before.items()),
            timeout=20,
            what="both children to be restarted",
        )
        assert scheduler.proc.poll() is None
        after = current_children(scheduler)
        assert all(parent_of(pid) == scheduler.proc.pid for pid in after.values())
        for name in before:
            [line] = messages(scheduler, rf"^{name} exited unexpectedly \(signal SIGKILL\)")
            assert "restarting it in 1s (restart 1)" in line["message"]
            assert line["level"] == "warning" and line["service"] == "scheduler"
        # The killed master's worker processes were stopped with its process group, not left consuming.
        wait_until(lambda: not any(parent_of(pid) for pid in worker_processes), timeout=30, what="orphans to end")
        wait_until(lambda: private_rabbit.consumers("biapp", QUEUE_SCHEDULER) == 1, timeout=30, what="one consumer")

        assert scheduler.stop(timeout=60) == 0
    finally:
        scheduler.stop()
