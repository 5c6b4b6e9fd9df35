"""Every item of an alert's events list is exactly what AlertEventSchema dumps for that event, whatever the event.

On PostgreSQL the list's items are JSON built by the database (services/api/alerts/listing.py); on SQLite
the ORM objects go through the schema. Events of every shape are compared, on both: each state, observed
values of every JSON kind, deliveries on every channel (with and without a target or an answer).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from services.api.alerts.schemas import AlertEventSchema
from shared import users
from shared.db import transaction
from shared.models import Alert, AlertDelivery, AlertEvent, SavedQuery
from tests.conftest import build_harness

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 30, 8, 0, 0, 123450, tzinfo=UTC)  # a fraction with a trailing zero

SHAPES = [
    dict(state="pending"),
    dict(
        state="true",
        evaluated_at=T0,
        observed=3,
        row_count=3,
        message="rows > 2: observed 3 rows",
        notified=True,
        notify_reason="changed",
    ),
    dict(state="false", evaluated_at=T0 + timedelta(seconds=1), observed=2.5, row_count=1),
    dict(state="false", evaluated_at=T0, observed="2026-11-30", row_count=1),
    dict(state="true", evaluated_at=T0, observed=12345678901234567, row_count=10**12),
    dict(state="true", evaluated_at=T0, observed=True, row_count=0),
    dict(state="false", evaluated_at=T0, observed=None, row_count=0),
    dict(
        state="error",
        evaluated_at=T0.replace(microsecond=0),
        error='The query failed: relation "x" is gone',
        notified=True,
        notify_reason="error",
    ),
]


def seed(factory) -> uuid.UUID:
    with transaction(factory) as session:
        owner = users.create_user(session, email="ana@example.com", password=PASSWORD, role="analyst")
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        alert = Alert(
            owner_id=owner.id,
            name="Stock low",
            saved_query_id=query.id,
            condition={"kind": "row_count", "op": "gt", "value": 2},
            schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        )
        session.add(alert)
        session.flush()
        for n, shape in enumerate(SHAPES):
            at = T0 + timedelta(minutes=n)
            event = AlertEvent(
                alert_id=alert.id,
                trigger=("schedule", "manual")[n % 2],
                scheduled_for=at,
                queued_at=at,
                **shape,
            )
            session.add(event)
            session.flush()
            if shape.get("notified"):
                session.add_all(
                    [
                        AlertDelivery(
                            event_id=event.id,
                            recipient="b@example.com",
                            kind="cc",
                            status="sent",
                            sent_at=at,
                            answer="",
                        ),
                        AlertDelivery(
                            event_id=event.id,
                            recipient="a@example.com",
                            status="failed",
                            attempts=3,
                            error="550 no such user",
                            answer="550 no such user",
                        ),
                        AlertDelivery(
                            event_id=event.id,
                            recipient="hooks.example.com",
                            channel="webhook",
                            target="hooks.example.com",
                            destination_id=uuid.uuid4(),
                            status="pending",
                            next_attempt_at=at + timedelta(minutes=5),
                        ),
                        AlertDelivery(
                            event_id=event.id,
                            recipient="teams",
                            channel="teams",
                            target=None,
                            status="sent",
                            answer="1",
                        ),
                    ]
                )
        return alert.id


def _dumped(factory, alert_id) -> dict:
    """Each event as the schema dumps it, through JSON (as a client receives it)."""
    with factory() as session:
        events = session.execute(sa.select(AlertEvent).where(AlertEvent.alert_id == alert_id)).scalars().all()
        return {str(event.id): orjson.loads(orjson.dumps(AlertEventSchema().dump(event))) for event in events}


@pytest.fixture(params=["postgresql", "sqlite"])
def harness(request, tmp_path):
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    api = build_harness(url, tmp_path)
    yield api
    api.session_factory.kw["bind"].dispose()


@pytest.mark.parametrize("who", ["ana@example.com", "admin"])
def test_event_items_are_what_the_schema_dumps(harness, who):
    alert_id = seed(harness.session_factory)
    if who == "admin":
        with transaction(harness.session_factory) as session:
            users.ensure_admin(session, email="root@example.com", password=PASSWORD)
        client = harness.client().login("root@example.com", PASSWORD)
    else:
        client = harness.client().login(who, PASSWORD)
    items, cursor = [], None
    while True:
        page = client.get(f"/api/alerts/{alert_id}/events?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200, page.get_json()
        assert page.headers["Content-Type"] == "application/json"
        body = page.get_json()
        assert body["total"] == len(SHAPES) and body["total_exact"] is True
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(items) == len(SHAPES)
    expected = _dumped(harness.session_factory, alert_id)
    for item in items:
        assert item == expected[item["id"]]
    assert [item["queued_at"] for item in items] == sorted((item["queued_at"] for item in items), reverse=True)
    first = next(item for item in items if item["notify_reason"] == "changed")
    assert [d["target"] for d in first["deliveries"]] == [
        "a@example.com",
        "b@example.com",
        "hooks.example.com",
        "teams",
    ]
    assert {item["observed"] for item in items if isinstance(item["observed"], int | float | str)} >= {
        3,
        2.5,
        "2026-11-30",
        12345678901234567,
    }


def test_another_users_alert_is_a_404_and_an_empty_filter_an_empty_page(harness):
    alert_id = seed(harness.session_factory)
    owner = harness.client().login("ana@example.com", PASSWORD)
    stranger = harness.create_user("bo@example.com")
    assert stranger.get(f"/api/alerts/{alert_id}/events").status_code == 404
    assert stranger.get(f"/api/alerts/{uuid.uuid4()}/events").status_code == 404
    assert owner.get(f"/api/alerts/{uuid.uuid4()}/events").status_code == 404
    empty = owner.get(f"/api/alerts/{alert_id}/events?state=pending&trigger=manual")
    assert empty.status_code == 200
    assert empty.get_json()["items"] == [] and empty.get_json()["total"] == 0
