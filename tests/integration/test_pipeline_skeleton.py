"""The walking skeleton on real services: PostgreSQL, RabbitMQ, an SMTP server on loopback,
and worker processes started with the same commands an operator uses."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid

import pytest
import sqlalchemy as sa

from services.api.app import create_app
from shared.db import transaction
from shared.messaging import BrokerPublisher, build_broker
from shared.models import Artifact, Delivery, EmailConfig, ReportExecution
from tests.integration.seeding import source_on_data_database
from tests.support import ApiClient, Process, base_env, make_settings, wait_until

PASSWORD = "correct horse battery"


@pytest.fixture
def env(pg_url, amqp):
    return base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_LOG_FORMAT="json")


@pytest.fixture
def workers(env, tmp_path):
    started = [
        Process(["worker", "renderer", "--processes", "1", "--threads", "2"], env, log=tmp_path / "renderer.log"),
        Process(["worker", "mailer", "--processes", "1", "--threads", "2"], env, log=tmp_path / "mailer.log"),
    ]
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def system(env, pg_data_database, pg_session_factory, smtp_server):
    """The API on PostgreSQL with a real RabbitMQ publisher, an admin, sales data and SMTP settings."""
    settings = make_settings(**env)
    broker = build_broker(settings)
    app = create_app(settings, publisher=BrokerPublisher(broker), session_factory=pg_session_factory)
    pg_data_database.execute(
        "drop table if exists skeleton_sales",
        "create table skeleton_sales (region text, revenue numeric(12,2))",
        "insert into skeleton_sales values ('EMEA', 1200.50), ('APAC', 990.00), ('=cmd|calc', 1.00)",
    )
    with transaction(pg_session_factory) as session:
        from shared import users

        users.create_user(session, email="ana@example.com", password=PASSWORD, role="admin")
        session.add(
            EmailConfig(
                owner_id=None,
                is_system_default=True,
                host=smtp_server.host,
                port=smtp_server.port,
                security="none",
                from_address="reports@example.com",
                from_name="Reports",
            )
        )
        source = source_on_data_database(pg_data_database, settings, name="Sales DB")
        session.add(source)
        session.flush()
        source_id = str(source.id)
    client = ApiClient(app.test_client()).login("ana@example.com", PASSWORD)
    query = client.post(
        "/api/saved-queries",
        json={
            "name": "Revenue",
            "data_source_id": source_id,
            "sql": "select region, revenue from skeleton_sales order by revenue desc",
        },
    )
    assert query.status_code == 201, query.get_json()
    report = client.post(
        "/api/scheduled-reports",
        json={
            "name": "Weekly revenue",
            "saved_query_id": query.get_json()["id"],
            "schedule": {"frequency": "weekly", "time": "09:00", "days_of_week": [0], "timezone": "Europe/Berlin"},
            "recipients": ["a@example.com", "b@example.com"],
            "cc": ["boss@example.com"],
            "formats": ["csv"],
            "subject": "Revenue {{date}}",
        },
    )
    assert report.status_code == 201, report.get_json()
    yield client, report.get_json(), BrokerPublisher(broker)
    broker.close()


def _finished(client, execution_id):
    body = client.get(f"/api/executions/{execution_id}").get_json()
    return body if body["status"] in ("success", "partial", "failed", "skipped") else None


def test_report_runs_through_real_workers_and_reaches_every_recipient_once(
    system, workers, smtp_server, pg_session_factory
):
    client, report, publisher = system
    accepted = client.post(f"/api/scheduled-reports/{report['id']}/run")
    assert accepted.status_code == 202
    execution_id = accepted.get_json()["execution_id"]

    execution = wait_until(lambda: _finished(client, execution_id), timeout=60, what="execution to finish")
    assert execution["status"] == "success", execution
    assert execution["trigger"] == "manual" and execution["row_count"] == 3
    stamps = [execution[k] for k in ("queued_at", "started_at", "rendered_at", "sending_at", "finished_at")]
    assert all(stamps) and stamps == sorted(stamps)
    assert sorted(d["recipient"] for d in execution["deliveries"]) == [
        "a@example.com",
        "b@example.com",
        "boss@example.com",
    ]
    assert all(d["status"] == "sent" and d["attempts"] == 1 for d in execution["deliveries"])

    mails = smtp_server.wait_for(3)
    assert sorted(m.recipients[0] for m in mails) == ["a@example.com", "b@example.com", "boss@example.com"]
    for mail in mails:
        assert len(mail.recipients) == 1  # nobody sees the others
        headers = f"{mail.message['To']} {mail.message['Cc'] or ''}"
        others = {"a@example.com", "b@example.com", "boss@example.com"} - {mail.recipients[0]}
        assert mail.recipients[0] in headers and not any(other in headers for other in others)
        assert mail.message["Subject"].startswith("Revenue 20")
        attachments = list(mail.message.iter_attachments())
        assert len(attachments) == 1
        assert attachments[0].get_content_type() == "text/csv"
        assert attachments[0].get_filename().startswith("weekly-revenue_")
        rows = list(csv.reader(io.StringIO(attachments[0].get_payload(decode=True).decode("utf-8"))))
        assert rows[0] == ["region", "revenue"]
        assert rows[1] == ["EMEA", "1200.50"]
        assert rows[3][0] == "'=cmd|calc"  # formula neutralised

    artifact = execution["artifacts"][0]
    download = client.get(f"/api/executions/{execution_id}/artifacts/{artifact['id']}")
    assert download.status_code == 200
    assert hashlib.sha256(download.data).hexdigest() == artifact["sha256"]

    # A redelivered message does nothing the second time: no new files, no second email.
    publisher.send("render_report", execution_id)
    publisher.send("deliver_report", execution_id)
    second = client.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    wait_until(lambda: _finished(client, second), timeout=60, what="second execution")
    wait_until(lambda: len(smtp_server.messages) >= 6, timeout=30, what="second run's emails")
    with pg_session_factory() as session:
        first_id = uuid.UUID(execution_id)
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(Artifact).where(Artifact.execution_id == first_id))
            == 1
        )
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.execution_id == first_id))
            == 3
        )
        first = session.get(ReportExecution, first_id)
        assert first.status == "success" and first.attempts == 1
    assert len(smtp_server.messages) == 6
