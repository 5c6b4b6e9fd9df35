"""Alerts over HTTP: validation 422s naming the field, ownership, evaluate now, history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.clock import FixedClock
from shared.db import transaction
from shared.models import AlertEvent, SavedQuery, User

NOW = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def analyst(api):
    api.clock = FixedClock(NOW)
    api.app.extensions["biapp"].clock = api.clock
    return api.create_user("ana@example.com", "analyst")


@pytest.fixture
def query_id(api, analyst):
    with transaction(api.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Open tickets", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        return str(query.id)


def body(query_id, **overrides):
    data = {
        "name": "Too many open tickets",
        "saved_query_id": query_id,
        "condition": {"kind": "row_count", "op": "gt", "value": 10},
        "schedule": {"frequency": "cron", "cron": "*/15 * * * *", "timezone": "Europe/Berlin"},
        "recipients": ["oncall@example.com", "ONCALL@example.com"],
    }
    data.update(overrides)
    return data


def create(client, query_id, **overrides) -> dict:
    response = client.post("/api/alerts", json=body(query_id, **overrides))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_created_alert_has_defaults_and_its_next_run(analyst, query_id):
    alert = create(analyst, query_id)
    assert alert["next_run_at"].startswith("2024-03-29T12:15:00")
    assert alert["recipients"] == ["oncall@example.com"]
    assert alert["notify"] == "on_change" and alert["notify_on_recovery"] is False
    assert alert["last_state"] is None and alert["is_active"] is True
    assert analyst.get("/api/alerts").get_json()["total"] == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"condition": {"kind": "row_count", "op": "more", "value": 1}}, "condition.op"),
        ({"condition": {"kind": "row_count", "op": "gt", "value": "ten"}}, "condition.value"),
        ({"condition": {"kind": "value", "op": "gt", "value": 1}}, "condition.column"),
        ({"condition": {"kind": "value", "column": "c", "aggregate": "median", "op": "gt", "value": 1}}, None),
        ({"condition": {"kind": "value", "column": "c", "op": "lt", "value": {"a": 1}}}, "condition.value"),
        ({"condition": "row_count > 10"}, "condition"),
        ({"notify": "sometimes"}, "notify"),
        ({"recipients": ["not an address"]}, "recipients"),
        ({"cc": ["nope"]}, "cc"),
        ({"schedule": {"frequency": "cron", "cron": "every minute"}}, "schedule"),
        ({"saved_query_id": str(uuid.uuid4())}, "saved_query_id"),
    ],
)
def test_invalid_alerts_are_refused_naming_the_field(analyst, query_id, overrides, field):
    response = analyst.post("/api/alerts", json=body(query_id, **overrides))
    assert response.status_code == 422, response.get_json()
    assert (field or "condition.aggregate") in response.get_json()["errors"]


def test_evaluate_now_queues_a_manual_event_without_moving_the_schedule(api, analyst, query_id):
    alert = create(analyst, query_id)
    response = analyst.post(f"/api/alerts/{alert['id']}/evaluate")
    assert response.status_code == 202
    event_id = response.get_json()["event_id"]
    assert response.get_json()["state"] == "pending"
    assert api.publisher.sent[-1] == ("evaluate_alert", (event_id,), None)
    assert analyst.get(f"/api/alerts/{alert['id']}").get_json()["next_run_at"] == alert["next_run_at"]
    events = analyst.get(f"/api/alerts/{alert['id']}/events").get_json()
    assert events["total"] == 1
    assert events["items"][0]["id"] == event_id and events["items"][0]["trigger"] == "manual"


def test_events_are_listed_newest_first_and_paginated(api, analyst, query_id):
    alert = create(analyst, query_id)
    with transaction(api.session_factory) as session:
        for minute in range(5):
            at = NOW.replace(minute=minute)
            session.add(
                AlertEvent(
                    alert_id=uuid.UUID(alert["id"]), trigger="schedule", scheduled_for=at, queued_at=at, state="false"
                )
            )
    page = analyst.get(f"/api/alerts/{alert['id']}/events?limit=2&offset=1").get_json()
    assert page["total"] == 5
    assert [e["queued_at"][:16] for e in page["items"]] == ["2024-03-29T12:03", "2024-03-29T12:02"]


def test_another_users_alert_is_not_found_and_delete_removes_history(api, analyst, query_id):
    alert = create(analyst, query_id)
    analyst.post(f"/api/alerts/{alert['id']}/evaluate")
    other = api.create_user("bo@example.com", "analyst")
    assert other.get(f"/api/alerts/{alert['id']}").status_code == 404
    assert other.post(f"/api/alerts/{alert['id']}/evaluate").status_code == 404
    assert other.get("/api/alerts").get_json()["total"] == 0
    assert analyst.delete(f"/api/alerts/{alert['id']}").status_code == 204
    assert analyst.get(f"/api/alerts/{alert['id']}").status_code == 404
    with api.session_factory() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(AlertEvent)).scalar_one() == 0


def test_pausing_clears_next_run_and_a_new_condition_starts_fresh(analyst, query_id):
    alert = create(analyst, query_id)
    paused = analyst.put(f"/api/alerts/{alert['id']}", json=body(query_id, is_active=False)).get_json()
    assert paused["next_run_at"] is None
    changed = body(query_id, condition={"kind": "value", "column": "one", "aggregate": "sum", "op": "gte", "value": 1})
    updated = analyst.put(f"/api/alerts/{alert['id']}", json=changed).get_json()
    assert updated["condition"] == {"kind": "value", "column": "one", "aggregate": "sum", "op": "gte", "value": 1}
    assert updated["next_run_at"].startswith("2024-03-29T12:15:00")


def test_whole_alert_path_on_sqlite_like_standalone(api, analyst):
    """Standalone runs on SQLite: evaluate over a SQLite source, notify once, a repeat sends nothing."""
    import sqlite3

    from services.mailer.alert_mail import deliver_event
    from services.renderer.alerting import evaluate_event
    from shared.context import build_context
    from shared.messaging import RecordingPublisher
    from shared.models import EmailConfig
    from shared.smtp import RecordingTransport

    with sqlite3.connect(f"{api.settings.sqlite_root}/ops.db") as connection:
        connection.execute("create table jobs (name text, failed integer)")
        connection.executemany("insert into jobs values (?, ?)", [("etl", 0), ("export", 1)])
    admin = api.create_user("admin@example.com", "admin")
    source = admin.post("/api/data-sources", json={"name": "Ops", "kind": "sqlite", "path": "ops.db"}).get_json()
    query = admin.post(
        "/api/saved-queries",
        json={"name": "Jobs", "data_source_id": source["id"], "sql": "select name, failed from jobs", "shared": True},
    ).get_json()
    with transaction(api.session_factory) as session:
        session.add(
            EmailConfig(is_system_default=True, host="127.0.0.1", port=25, security="none", from_address="bi@x.org")
        )
    condition = {"kind": "value", "column": "failed", "aggregate": "any", "op": "eq", "value": 1}
    alert = create(analyst, query["id"], condition=condition, cc=["cc@example.com"])
    ctx = build_context(api.settings, RecordingPublisher(), session_factory=api.session_factory)
    transport = RecordingTransport()
    for _ in range(2):
        api.clock.advance(minutes=1)
        event_id = analyst.post(f"/api/alerts/{alert['id']}/evaluate").get_json()["event_id"]
        assert evaluate_event(ctx, event_id) == "true"
        for actor, args, _ in ctx.publisher.sent:
            assert actor == "deliver_alert"
            deliver_event(ctx, transport, args[0])
            assert deliver_event(ctx, transport, args[0]) == 0
        ctx.publisher.sent.clear()
    assert sorted(rcpt for _, rcpt, _ in transport.sent) == ["cc@example.com", "oncall@example.com"]
    assert transport.sent[0][2]["Subject"] == "[Alert] Too many open tickets: any failed = 1 (observed 1)"
    events = analyst.get(f"/api/alerts/{alert['id']}/events").get_json()["items"]
    assert [(e["state"], e["notified"]) for e in events] == [("true", False), ("true", True)]
    assert {d["recipient"]: d["status"] for d in events[1]["deliveries"]} == {
        "oncall@example.com": "sent",
        "cc@example.com": "sent",
    }
    assert analyst.get(f"/api/alerts/{alert['id']}").get_json()["last_state"] == "true"
