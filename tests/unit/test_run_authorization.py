"""Every run re-checks that its owner may still read what it reads; if not, it fails and sends nothing.

Seen before: a viewer's report on a query shared with them kept running after the owner unshared it
and rewrote it to `select * from secrets`: the CSV contained the secret.
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from services.renderer.alerting import evaluate_event
from services.renderer.render import render_execution
from shared.context import build_context
from shared.db import transaction
from shared.messaging import RecordingPublisher
from shared.models import AlertEvent, Artifact, ReportExecution, User

SECRET = "hunter2-the-payroll-secret"


@pytest.fixture
def world(api):
    with sqlite3.connect(f"{api.settings.sqlite_root}/sales.db") as connection:
        connection.execute("create table sales (region text, revenue real)")
        connection.execute("insert into sales values ('EMEA', 10)")
        connection.execute("create table secrets (value text)")
        connection.execute(f"insert into secrets values ('{SECRET}')")
    admin = api.create_user("admin@example.com", "admin")
    analyst = api.create_user("ana@example.com", "analyst")
    viewer = api.create_user("vera@example.com", "viewer")
    source = admin.post("/api/data-sources", json={"name": "Sales", "kind": "sqlite", "path": "sales.db"}).get_json()
    query = analyst.post(
        "/api/saved-queries",
        json={"name": "Sales", "data_source_id": source["id"], "sql": "select * from sales", "shared": True},
    ).get_json()
    ctx = build_context(api.settings, RecordingPublisher(), session_factory=api.session_factory)
    return api, ctx, analyst, viewer, source, query


def _report(client, **target) -> dict:
    body = {
        "name": "Shared sales",
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        "recipients": ["vera@example.com"],
        "formats": ["csv"],
        **target,
    }
    response = client.post("/api/scheduled-reports", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _run(api, ctx, client, report) -> ReportExecution:
    execution_id = client.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    render_execution(ctx, execution_id)
    with api.session_factory() as session:
        execution = session.get(ReportExecution, uuid.UUID(execution_id))
        artifacts = session.scalars(sa.select(Artifact).where(Artifact.execution_id == execution.id)).all()
        assert not artifacts or execution.status == "rendered"
        return execution


def _nothing_sent(ctx) -> bool:
    return not [actor for actor, _, _ in ctx.publisher.sent if actor.startswith("deliver")]


def test_a_report_runs_while_the_query_is_shared(world):
    api, ctx, _, viewer, _, query = world
    execution = _run(api, ctx, viewer, _report(viewer, saved_query_id=query["id"]))
    assert execution.status == "rendered"


def test_unsharing_and_rewriting_the_query_fails_the_viewers_run_and_sends_nothing(world):
    api, ctx, analyst, viewer, source, query = world
    report = _report(viewer, saved_query_id=query["id"])
    rewritten = {"name": "Sales", "data_source_id": source["id"], "sql": "select * from secrets", "shared": False}
    assert analyst.put(f"/api/saved-queries/{query['id']}", json=rewritten).status_code == 200

    execution = _run(api, ctx, viewer, report)

    assert execution.status == "failed"
    assert "no longer shared" in execution.error
    assert _nothing_sent(ctx)
    history = viewer.get(f"/api/executions/{execution.id}").get_data(as_text=True)
    assert SECRET not in history


def test_a_dashboard_widget_whose_query_was_unshared_fails_the_run(world):
    api, ctx, analyst, viewer, source, query = world
    board = analyst.post(
        "/api/dashboards",
        json={"name": "Board", "shared": True, "widgets": [{"title": "Sales", "saved_query_id": query["id"]}]},
    ).get_json()
    report = _report(viewer, dashboard_id=board["id"])
    analyst.put(
        f"/api/saved-queries/{query['id']}",
        json={"name": "Sales", "data_source_id": source["id"], "sql": "select * from secrets", "shared": False},
    )
    execution = _run(api, ctx, viewer, report)
    assert execution.status == "failed" and "widget 'Sales'" in execution.error
    assert _nothing_sent(ctx)


def test_a_deactivated_owner_s_report_no_longer_runs(world):
    api, ctx, _, viewer, _, query = world
    report = _report(viewer, saved_query_id=query["id"])
    with transaction(api.session_factory) as session:
        session.execute(sa.update(User).where(User.email == "vera@example.com").values(is_active=False))
    execution_id = _manual_execution(api, report["id"])
    render_execution(ctx, execution_id)
    with api.session_factory() as session:
        execution = session.get(ReportExecution, uuid.UUID(execution_id))
    assert execution.status == "failed" and "no longer an active user" in execution.error


def test_raw_sql_whose_author_was_demoted_to_viewer_is_not_run(world):
    api, ctx, _, viewer, _, query = world
    report = _report(viewer, saved_query_id=query["id"])
    with transaction(api.session_factory) as session:
        session.execute(sa.update(User).where(User.email == "ana@example.com").values(role="viewer"))
    execution = _run(api, ctx, viewer, report)
    assert execution.status == "failed" and "may no longer write SQL" in execution.error


def test_an_alert_on_an_unshared_query_records_why_and_notifies_nobody(world):
    api, ctx, analyst, viewer, source, query = world
    alert = viewer.post(
        "/api/alerts",
        json={
            "name": "Any sales",
            "saved_query_id": query["id"],
            "condition": {"kind": "row_count", "op": "gt", "value": 0},
            "schedule": {"frequency": "daily", "time": "09:00", "timezone": "UTC"},
            "recipients": ["vera@example.com"],
            "notify_on_error": True,
        },
    ).get_json()
    analyst.put(
        f"/api/saved-queries/{query['id']}",
        json={"name": "Sales", "data_source_id": source["id"], "sql": "select * from secrets", "shared": False},
    )
    event_id = viewer.post(f"/api/alerts/{alert['id']}/evaluate").get_json()["event_id"]
    assert evaluate_event(ctx, event_id) == "error"
    with api.session_factory() as session:
        event = session.get(AlertEvent, uuid.UUID(event_id))
    assert event.notified is False and "no longer shared" in event.error
    assert _nothing_sent(ctx)


def _manual_execution(api, report_id) -> str:
    from datetime import UTC, datetime

    from shared.models import ScheduledReport
    from shared.runs import create_execution

    with transaction(api.session_factory) as session:
        report = session.get(ScheduledReport, uuid.UUID(report_id))
        execution = create_execution(session, report, trigger="manual", now=datetime.now(UTC), requester=None)
        return str(execution.id)
