"""On PostgreSQL the reports list knows a report is unchanged by its rows' versions (xmin): any change,
through the API or by hand in SQL, to the report or one of its destinations shows in the next list."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.models import SavedQuery, User
from tests.conftest import build_harness


@pytest.fixture
def harness(pg_url, tmp_path):
    api = build_harness(pg_url, tmp_path)
    yield api
    api.session_factory.kw["bind"].dispose()


def listed(client, report_id) -> dict:
    response = client.get("/api/scheduled-reports?limit=50")
    assert response.status_code == 200
    return next(item for item in response.get_json()["items"] if item["id"] == report_id)


def test_a_change_by_hand_to_a_report_or_its_destination_shows_in_the_next_list(harness):
    client = harness.create_user("ana@example.com", "analyst")
    with transaction(harness.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        query_id = str(query.id)
    created = client.post(
        "/api/scheduled-reports",
        json={
            "name": "Daily revenue",
            "saved_query_id": query_id,
            "schedule": {"frequency": "daily", "time": "02:30", "timezone": "Europe/Berlin"},
            "destinations": [{"kind": "webhook", "url": "https://hooks.example.com/a"}],
            "formats": ["csv"],
        },
    )
    assert created.status_code == 201, created.get_json()
    report_id = created.get_json()["id"]
    assert listed(client, report_id) == client.get(f"/api/scheduled-reports/{report_id}").get_json()

    for statement, shows in [
        ("update scheduled_reports set is_active = false where id = :id", lambda item: item["is_active"] is False),
        ("update scheduled_reports set is_active = true where id = :id", lambda item: item["is_active"] is True),
        ("update scheduled_reports set name = 'By hand' where id = :id", lambda item: item["name"] == "By hand"),
        (
            "update destinations set target = 'hooks2.example.com' where report_id = :id",
            lambda item: [d["target"] for d in item["destinations"]] == ["hooks2.example.com"],
        ),
        ("delete from destinations where report_id = :id", lambda item: item["destinations"] == []),
    ]:
        with transaction(harness.session_factory) as session:
            session.execute(sa.text(statement), {"id": report_id})
        item = listed(client, report_id)
        assert shows(item), (statement, item)
        assert item == client.get(f"/api/scheduled-reports/{report_id}").get_json()
