"""SIGTERM to a real renderer mid-render: the run in progress finishes, the waiting one is requeued.

The signal goes to the `biapp worker` process only, as Kubernetes (through tini) sends it;
the dramatiq master forwards it once to its worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER
from shared.models import Artifact, ReportExecution, ScheduledReport
from tests.conftest import queue_depth
from tests.integration import test_dispatch
from tests.integration.seeding import add_report, seed_query
from tests.support import Process, free_port, wait_until

env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx

# Four seconds inside the database, ten rows out.
SLOW_SQL = "select g, pg_sleep(0.4) as waited from generate_series(1, 10) as g"


def start(service: str, worker_env: dict, tmp_path, name: str) -> Process:
    own = {**worker_env, "dramatiq_prom_port": str(free_port()), "dramatiq_prom_db": str(tmp_path / f"prom-{name}")}
    return Process(["worker", service, "--processes", "1", "--threads", "1"], own, log=tmp_path / f"{name}.log")


def new_run(factory, report_id) -> uuid.UUID:
    with transaction(factory) as session:
        report = session.get(ScheduledReport, report_id)
        execution = ReportExecution(
            report_id=report.id,
            trigger="manual",
            status="queued",
            scheduled_for=sa.func.now(),
            recipients=[{"address": "a@example.com", "kind": "to"}],
        )
        session.add(execution)
        session.flush()
        return execution.id


def status(factory, execution_id) -> ReportExecution:
    with factory() as session:
        return session.get(ReportExecution, execution_id)


@pytest.fixture
def report_id(pg_data_database, pg_session_factory, settings, smtp_server):
    owner, query = seed_query(pg_session_factory, pg_data_database, settings, sql=SLOW_SQL, smtp=smtp_server)
    with transaction(pg_session_factory) as session:
        return add_report(session, owner, query, now=datetime.now(UTC)).id


def test_sigterm_mid_render_finishes_the_run_and_requeues_the_one_waiting(
    env, make_ctx, pg_session_factory, report_id, smtp_server, tmp_path, amqp
):
    worker_env = {**env, "BIAPP_LOG_FORMAT": "json"}
    publisher = make_ctx().publisher
    first, second = new_run(pg_session_factory, report_id), new_run(pg_session_factory, report_id)
    renderer = start("renderer", worker_env, tmp_path, "renderer-1")
    replacement = mailer = None
    try:
        publisher.send("render_report", str(first))
        wait_until(lambda: status(pg_session_factory, first).status == "running", timeout=30, what="render start")
        publisher.send("render_report", str(second))  # prefetched by the busy worker, not started
        time.sleep(1)  # inside the query now

        os.kill(renderer.proc.pid, signal.SIGTERM)
        assert renderer.proc.wait(60) == 0, renderer.output()

        done = status(pg_session_factory, first)
        assert done.status == "rendered", (done.status, done.error, renderer.output())
        assert done.row_count == 10
        with pg_session_factory() as session:
            assert session.execute(sa.select(Artifact).where(Artifact.execution_id == first)).scalars().all()
        assert status(pg_session_factory, second).status == "queued"
        assert queue_depth(amqp, QUEUE_RENDERER) == 1, "the waiting run went back to RabbitMQ"
        assert queue_depth(amqp, QUEUE_MAILER) == 1, "the finished render handed over to the mailer"

        # Its log lines are JSON objects that name the run.
        entries = [json.loads(line) for line in renderer.output().splitlines() if line.startswith("{")]
        assert any(e.get("execution_id") == str(first) and e["service"] == "renderer" for e in entries)

        replacement = start("renderer", worker_env, tmp_path, "renderer-2")
        mailer = start("mailer", worker_env, tmp_path, "mailer")
        for execution_id in (first, second):
            wait_until(
                lambda eid=execution_id: status(pg_session_factory, eid).status == "success",
                timeout=60,
                what="both runs delivered",
            )
        assert status(pg_session_factory, second).attempts == 1, "requeued, not failed and retried"
        assert len(smtp_server.wait_for(2)) == 2
    finally:
        for process in (renderer, replacement, mailer):
            if process is not None:
                process.stop()
