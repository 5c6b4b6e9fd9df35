"""Log lines: one JSON object each, with the run they belong to, and never a secret."""

from __future__ import annotations

import io
import json
import logging

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from shared.logs import JsonFormatter, TextFormatter, configure_logging


@pytest.fixture
def capture():
    """Route the root logger through configure_logging() into a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()

    def configure(log_format: str = "json", service: str = "renderer") -> io.StringIO:
        configure_logging(service, log_format, "DEBUG")
        root.handlers[0].setStream(stream)
        return stream

    yield configure
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_json_line_is_one_object_with_time_level_service_and_the_run(capture):
    stream = capture("json", service="renderer")
    log = logging.getLogger("biapp.test")
    log.info("rendered", extra={"execution_id": "e-1", "report_id": "r-1"})
    log.warning("plain line")
    entries = lines(stream)
    assert len(entries) == 2
    first = entries[0]
    assert first["service"] == "renderer" and first["level"] == "info" and first["message"] == "rendered"
    assert first["execution_id"] == "e-1" and first["report_id"] == "r-1"
    assert first["ts"].endswith("+00:00")
    assert "execution_id" not in entries[1]


def test_a_traceback_stays_on_its_one_line(capture):
    stream = capture("json")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("biapp.test").exception("render crashed", extra={"execution_id": "e-2"})
    (entry,) = lines(stream)
    assert "RuntimeError: boom" in entry["exception"] and entry["execution_id"] == "e-2"


def test_lines_logged_while_a_message_is_processed_name_its_execution(capture):
    stream = capture("json")
    broker = StubBroker(middleware=[CurrentMessage()])
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, actor_name="render_report", queue_name="biapp.renderer")
    def render_report(execution_id):
        logging.getLogger("somelibrary").info("fetching rows")

    message = render_report.send("6f1c0d2e-0000-4000-8000-000000000001")
    worker = Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join("biapp.renderer")
        worker.join()
    finally:
        worker.stop()
    (entry,) = [e for e in lines(stream) if e["message"] == "fetching rows"]
    assert entry["execution_id"] == "6f1c0d2e-0000-4000-8000-000000000001"
    assert entry["message_id"] == message.message_id and entry["actor"] == "render_report"


def test_text_format_is_for_humans(capture):
    stream = capture("text", service="api")
    logging.getLogger("biapp.test").info("hello", extra={"execution_id": "e-3"})
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert " INFO " in line and " api biapp.test: hello" in line and "execution_id=e-3" in line


SECRETS = [
    "postgresql+psycopg://reader:S3cr3t-pw@db.example.com:5432/sales",
    "amqp://biapp:Rabbit-pw-77@rabbitmq:5672/biapp?heartbeat=60",
    "password=Hunter2-pw",
    '{"username": "reports", "password": "Smtp-app-pw"}',
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZw",
    "gAAAAABmZ0Xx1bq3_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
]


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_never_reach_the_log(capture, log_format, secret):
    stream = capture(log_format)
    log = logging.getLogger("biapp.test")
    log.warning("cannot connect with %s", secret)
    try:
        raise ConnectionError(f"failed: {secret}")
    except ConnectionError:
        log.exception("connect failed")
    out = stream.getvalue()
    for value in ("S3cr3t-pw", "Rabbit-pw-77", "Hunter2-pw", "Smtp-app-pw", "c2lnbmF0dXJlLXNpZw", "gAAAAABmZ0Xx"):
        assert value not in out
    assert "***" in out


def test_hosts_and_user_names_stay_readable():
    formatter = JsonFormatter("api")
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "connect %s", ("postgresql://reader:pw@db:5432/s",), None
    )
    assert json.loads(formatter.format(record))["message"] == "connect postgresql://reader:***@db:5432/s"
    assert "reader:***@db" in TextFormatter("api").format(record)
