"""After one scheduled report has run end to end, Prometheus can read every series the guide names.

The API serves HTTP and pipeline series on /metrics; each worker serves its biapp_* series
next to Dramatiq's own on the Prometheus port of its container.
"""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from services.scheduler.dispatch import dispatch_due_reports
from shared.db import transaction
from shared.models import ReportExecution, ScheduledReport
from tests.integration import test_dispatch
from tests.integration.seeding import add_report, seed_query
from tests.support import ApiClient, Process, free_port, wait_until

env = test_dispatch.env
settings = test_dispatch.settings
make_ctx = test_dispatch.make_ctx


def samples(text: str) -> list[tuple[str, dict, float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels) -> float:
    found = [v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items()]
    assert found, f"{name}{labels} is not exposed"
    return sum(found)


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


@pytest.fixture
def workers(env, tmp_path):
    started: dict[str, tuple[Process, int]] = {}
    for service in ("renderer", "mailer"):
        port = free_port()
        own = {**env, "dramatiq_prom_port": str(port), "dramatiq_prom_db": str(tmp_path / f"prom-{service}")}
        process = Process(
            ["worker", service, "--processes", "1", "--threads", "1"], own, log=tmp_path / f"{service}.log"
        )
        started[service] = (process, port)
    yield {service: port for service, (_p, port) in started.items()}
    for process, _port in started.values():
        process.stop()


def test_metrics_expose_http_executions_render_delivery_lag_and_queue_series_after_one_run(
    settings, make_ctx, pg_data_database, pg_session_factory, smtp_server, workers, amqp
):
    owner, query = seed_query(pg_session_factory, pg_data_database, settings, sql="select 1 as one", smtp=smtp_server)
    with transaction(pg_session_factory) as session:
        report = add_report(session, owner, query, now=datetime.now(UTC))
        report.next_run_at = datetime.now(UTC) - timedelta(seconds=5)
        report_id = report.id
    app = create_app(settings, session_factory=pg_session_factory)
    app.testing = True
    client = ApiClient(app.test_client()).login("ana@example.com", "correct horse battery")
    assert client.get(f"/api/scheduled-reports/{report_id}").status_code == 200

    dispatch_due_reports(make_ctx())

    def finished():
        with pg_session_factory() as session:
            run = session.query(ReportExecution).filter_by(report_id=report_id).one_or_none()
            return run if run is not None and run.status == "success" else None

    run = wait_until(finished, timeout=60, what="the scheduled run to be delivered")
    assert run.trigger == "schedule"
    with pg_session_factory() as session:
        assert session.get(ScheduledReport, report_id).next_run_at > datetime.now(UTC)

    api = app.test_client().get("/metrics").get_data(as_text=True)
    route = "/api/scheduled-reports/<uuid:report_id>"
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/scheduled-reports/<")}
    route = route if route in rules else sorted(rules, key=len)[0]
    assert value(api, "biapp_http_requests_total", method="GET", route=route, status="200") >= 1
    assert value(api, "biapp_http_request_duration_seconds_count", method="GET", route=route) >= 1
    assert value(api, "biapp_queue_messages", queue="biapp.renderer") == 0
    assert value(api, "biapp_queue_messages", queue="biapp.mailer.XQ") == 0
    assert value(api, "biapp_queue_consumers", queue="biapp.renderer") >= 1
    assert value(api, "biapp_broker_up") == 1
    assert value(api, "biapp_executions_open", status="running") == 0

    renderer = wait_until(lambda: scrape(workers["renderer"]), timeout=30, what="the renderer's metrics")
    assert value(renderer, "biapp_render_duration_seconds_count") == 1
    assert value(renderer, "biapp_render_rows_count") == 1
    assert value(renderer, "biapp_render_rows_sum") == 1
    assert value(renderer, "biapp_scheduler_lag_seconds_count") == 1
    assert value(renderer, "dramatiq_messages_total", queue_name="biapp.renderer", actor_name="render_report") == 1

    mailer = wait_until(lambda: scrape(workers["mailer"]), timeout=30, what="the mailer's metrics")
    assert value(mailer, "biapp_executions_total", status="success", trigger="schedule") == 1
    assert value(mailer, "biapp_deliveries_total", outcome="sent") == 1
    assert value(mailer, "dramatiq_messages_total", actor_name="deliver_report") == 1
