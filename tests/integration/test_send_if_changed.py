"""send_only_if_changed on PostgreSQL: a run whose rows equal the last delivered run's is skipped, not sent."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.mailer.deliver import deliver_execution
from services.mailer.transport import SmtplibTransport
from services.renderer.render import render_execution
from shared.clock import FixedClock
from shared.context import build_context
from shared.db import transaction
from shared.messaging import RecordingPublisher
from shared.models import DataSource, EmailConfig, ReportExecution, SavedQuery, User
from tests.conftest import build_harness

NOW = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)  # 13:00 in Berlin


@pytest.fixture
def world(pg_url, tmp_path, smtp_server):
    """The API on PostgreSQL (its clock standing at NOW), a SQLite file of sales, an SMTP server, a report."""
    harness = build_harness(pg_url, tmp_path)
    harness.app.extensions["biapp"].clock = FixedClock(NOW)
    owner = harness.create_user("ana@example.com", "analyst")
    sales = f"{harness.settings.sqlite_root}/sales.db"
    with sqlite3.connect(sales) as conn:
        conn.execute("create table sales (region text, revenue numeric)")
        conn.executemany("insert into sales values (?, ?)", [("EMEA", 1200.5), ("APAC", 990)])
    with transaction(harness.session_factory) as session:
        ana = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        session.add(
            EmailConfig(
                is_system_default=True,
                host=smtp_server.host,
                port=smtp_server.port,
                security="none",
                from_address="reports@example.com",
            )
        )
        source = DataSource(name="Sales", kind="sqlite", path="sales.db", options={}, owner_id=ana.id)
        session.add(source)
        session.flush()
        sql = "select region, revenue from sales order by region"
        query = SavedQuery(name="Sales", kind="sql", data_source_id=source.id, sql=sql, owner_id=ana.id)
        session.add(query)
        session.flush()
        query_id = str(query.id)
    body = {
        "name": "Sales",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        "recipients": ["bo@example.com"],
        "formats": ["csv"],
        "send_only_if_changed": True,
    }
    created = owner.post("/api/scheduled-reports", json=body)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["send_only_if_changed"] is True
    ctx = build_context(harness.settings, RecordingPublisher(), session_factory=harness.session_factory)
    return owner, created.get_json()["id"], body, ctx, sales


def run(world, trigger: str = "run") -> ReportExecution:
    """Start a run through the API, render it, and deliver it when the renderer hands it to the mailer."""
    owner, report_id, _body, ctx, _sales = world
    execution_id = owner.post(f"/api/scheduled-reports/{report_id}/{trigger}").get_json()["execution_id"]
    ctx.publisher.sent.clear()
    render_execution(ctx, execution_id)
    if ctx.publisher.sent:
        deliver_execution(ctx, SmtplibTransport(), execution_id)
    with ctx.session_factory() as session:
        return session.get(ReportExecution, execution_id)


def test_the_same_rows_are_not_sent_again_until_they_change(world, smtp_server):
    first = run(world)
    assert first.status == "success" and len(first.rows_hash) == 64

    same = run(world)
    assert same.status == "skipped" and same.row_count == 2 and same.rows_hash == first.rows_hash
    assert same.error == "The data has not changed since the last successful run (2024-03-29 13:00 CET)."
    assert same.deliveries == [] and len(smtp_server.messages) == 1

    with sqlite3.connect(world[4]) as conn:
        conn.execute("update sales set revenue = 1200.75 where region = 'EMEA'")
    test = run(world, "test")  # a test run always sends, and reaches only the tester: never the baseline
    assert test.status == "success" and test.rows_hash != first.rows_hash and len(smtp_server.messages) == 2
    changed = run(world)
    assert changed.status == "success" and changed.rows_hash == test.rows_hash
    assert run(world).status == "skipped"
    assert len(smtp_server.messages) == 3


def test_with_the_option_off_the_same_rows_are_sent_every_time(world, smtp_server):
    owner, report_id, body, _ctx, _sales = world
    turned_off = owner.put(f"/api/scheduled-reports/{report_id}", json={**body, "send_only_if_changed": False})
    assert turned_off.get_json()["send_only_if_changed"] is False
    first, second = run(world), run(world)
    assert (first.status, second.status) == ("success", "success")
    assert first.rows_hash == second.rows_hash and len(smtp_server.messages) == 2
