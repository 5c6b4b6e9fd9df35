"""End to end: a report due in the next minute, real periodiq and workers, arrives by email."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.db import transaction
from shared.models import ReportExecution, ScheduledReport
from tests.integration.seeding import add_report, seed_query
from tests.support import Process, base_env, free_port, make_settings, wait_until


@pytest.fixture
def env(pg_url, amqp):
    return base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_LOG_FORMAT="json")


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            return response.read().decode()
    except OSError:
        return ""


def _lag_count(port: int) -> float:
    match = re.search(r"^biapp_scheduler_lag_seconds_count(?:\{[^}]*\})? (\S+)$", _scrape(port), re.M)
    return float(match.group(1)) if match else 0.0


def test_a_report_due_in_the_next_minute_arrives_by_email(
    env, pg_data_database, pg_session_factory, smtp_server, tmp_path
):
    settings = make_settings(**env)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings, smtp=smtp_server)
    # Due at the first whole minute at least 15 s away, so the processes are up for its tick.
    due = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    zone = "Asia/Kolkata"  # a report's local time is not the server's
    local = due.astimezone(ZoneInfo(zone))
    schedule = {"frequency": "daily", "time": f"{local:%H:%M}", "timezone": zone}
    with transaction(pg_session_factory) as session:
        report = add_report(
            session,
            owner,
            query,
            now=datetime.now(UTC),
            schedule=schedule,
            name="Morning numbers",
            recipients=["a@example.com", "b@example.com"],
        )
        assert report.next_run_at == due
        report_id = report.id

    metrics_port = free_port()
    renderer_env = {
        **env,
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(metrics_port),
        "dramatiq_prom_db": str(tmp_path / "prom-renderer"),
    }
    (tmp_path / "prom-renderer").mkdir()
    processes = [
        Process(["scheduler"], {**env, "dramatiq_prom_port": str(free_port())}, log=tmp_path / "scheduler.log"),
        Process(["worker", "renderer", "--processes", "1", "--threads", "1"], renderer_env, log=tmp_path / "r.log"),
        Process(
            ["worker", "mailer", "--processes", "1", "--threads", "1"],
            {**env, "dramatiq_prom_port": str(free_port())},
            log=tmp_path / "mailer.log",
        ),
    ]
    try:
        mails = smtp_server.wait_for(2, timeout=150)
        assert sorted(m.recipients[0] for m in mails) == ["a@example.com", "b@example.com"]
        assert all(m.message["Subject"].startswith("Morning numbers") for m in mails)

        def finished():
            with pg_session_factory() as session:
                runs = session.query(ReportExecution).filter_by(report_id=report_id).all()
                return runs if runs and runs[0].status == "success" else None

        [execution] = wait_until(finished, timeout=30, what="the execution to succeed")
        assert execution.trigger == "schedule" and execution.late is False
        assert execution.scheduled_for == due
        assert execution.started_at is not None and execution.started_at >= due
        with pg_session_factory() as session:
            assert session.get(ScheduledReport, report_id).next_run_at == due + timedelta(days=1)

        # The lag is logged by the dispatcher and exported by the worker that started the run.
        logged = [json.loads(line) for line in processes[0].output().splitlines() if '"lag_s"' in line]
        assert any(entry.get("execution_id") == str(execution.id) for entry in logged), processes[0].output()[-2000:]
        wait_until(lambda: _lag_count(metrics_port) >= 1, timeout=15, what="biapp_scheduler_lag_seconds")
    finally:
        for process in processes:
            process.stop()
