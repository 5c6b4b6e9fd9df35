"""PATCH with a partial body is PUT with only those fields changed: same checks, same side effects."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.clock import FixedClock
from shared.db import transaction
from shared.models import DataSource, ReportExecution, SavedQuery, User
from tests.conftest import build_harness
from tests.support import free_port

NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
WEBHOOK = {"kind": "webhook", "url": "https://hooks.example.com/reports?token=s3cret"}


@pytest.fixture
def harness(sqlite_url, tmp_path):
    api = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="0.0.0.0/0")
    api.app.extensions["biapp"].clock = FixedClock(NOW)
    return api


@pytest.fixture
def analyst(harness):
    return harness.create_user("ana@example.com", "analyst")


@pytest.fixture
def admin(harness):
    return harness.create_user("root@example.com", "admin")


@pytest.fixture
def query_id(harness, analyst):
    with transaction(harness.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        source = DataSource(name="Local", kind="sqlite", path="local.db", options={}, owner_id=owner.id)
        session.add(source)
        session.flush()
        query = SavedQuery(
            name="Revenue", kind="sql", sql="select 1 as one", data_source_id=source.id, owner_id=owner.id
        )
        session.add(query)
        session.flush()
        return str(query.id)


@pytest.fixture
def report(analyst, query_id) -> dict:
    body = {
        "name": "Daily revenue",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        "destinations": [
            {"kind": "email", "address": "a@example.com"},
            {"kind": "email", "address": "boss@example.com", "role": "cc"},
            WEBHOOK,
        ],
        "formats": ["csv", "pdf"],
        "subject": "Revenue {{date}}",
    }
    response = analyst.post("/api/scheduled-reports", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _as_read(report: dict) -> dict:
    """A report as GET answers it: a webhook's signing secret is shown only in the response that created it."""
    destinations = [{k: v for k, v in d.items() if k != "signing_secret"} for d in report["destinations"]]
    return {**report, "destinations": destinations}


def _unchanged(before: dict, after: dict, *changed: str) -> None:
    moving = {"updated_at", "next_run_at", "last_execution", *changed}
    before, after = _as_read(before), _as_read(after)
    assert {k: v for k, v in after.items() if k not in moving} == {k: v for k, v in before.items() if k not in moving}


def test_patching_is_active_false_pauses_a_report_and_skips_its_scheduled_runs(harness, analyst, report):
    with transaction(harness.session_factory) as session:
        scheduled = ReportExecution(
            report_id=uuid.UUID(report["id"]),
            trigger="schedule",
            status="queued",
            scheduled_for=NOW,
            queued_at=NOW,
            recipients=[],
        )
        session.add(scheduled)
        session.flush()
        scheduled_id = scheduled.id

    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json={"is_active": False})

    assert response.status_code == 200, response.get_json()
    paused = response.get_json()
    assert paused["is_active"] is False and paused["next_run_at"] is None
    _unchanged(report, paused, "is_active")
    with harness.session_factory() as session:
        cancelled = session.get(ReportExecution, scheduled_id)
    assert cancelled.status == "skipped" and "paused" in cancelled.error
    resumed = analyst.patch(f"/api/scheduled-reports/{report['id']}", json={"is_active": True}).get_json()
    assert resumed["next_run_at"] == report["next_run_at"], "resuming recomputes the next run from now"


def test_a_patch_that_names_no_destination_keeps_every_destination_its_id_and_its_secret(harness, analyst, report):
    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json={"name": "Revenue, daily"})

    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["name"] == "Revenue, daily"
    assert after["destinations"] == _as_read(report)["destinations"]
    assert "s3cret" not in response.get_data(as_text=True)


def test_patching_recipients_replaces_only_the_to_addresses(analyst, report):
    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json={"recipients": ["new@example.com"]})

    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["recipients"] == ["new@example.com"] and after["cc"] == ["boss@example.com"]
    webhooks = [d for d in after["destinations"] if d["kind"] == "webhook"]
    assert [(d["id"], d["has_secret"]) for d in webhooks] == [
        (d["id"], True) for d in report["destinations"] if d["kind"] == "webhook"
    ]


def test_patching_the_schedule_recomputes_the_next_run(analyst, report):
    response = analyst.patch(
        f"/api/scheduled-reports/{report['id']}",
        json={"schedule": {"frequency": "weekly", "time": "07:30", "days_of_week": ["fri"], "timezone": "UTC"}},
    )
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["schedule"]["days_of_week"] == [4]
    assert after["next_run_at"].startswith("2024-06-07T07:30:00")
    _unchanged(report, after, "schedule")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"is_active": "maybe"}, "is_active"),
        ({"formats": ["docx"]}, "formats"),
        ({"schedule": {"frequency": "cron", "cron": "61 * * * *"}}, "schedule"),
        ({"recipients": ["not an address"]}, "recipients"),
        ({"colour": "blue"}, "colour"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"next_run_at": "2030-01-01T00:00:00Z"}, "next_run_at"),
    ],
)
def test_a_bad_or_unknown_field_is_a_422_naming_it_and_changes_nothing(analyst, report, patch, field):
    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json=patch)

    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert field in body["errors"] and field in body["message"]
    assert analyst.get(f"/api/scheduled-reports/{report['id']}").get_json() == _as_read(report)


def test_a_patch_body_that_is_not_an_object_is_refused(analyst, report):
    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json=["is_active", False])
    assert response.status_code == 422
    assert response.get_json()["message"] == "The body must be a JSON object."


def test_someone_elses_report_cannot_be_patched(harness, report):
    bob = harness.create_user("bob@example.com", "analyst")
    assert bob.patch(f"/api/scheduled-reports/{report['id']}", json={"is_active": False}).status_code == 404


def test_patching_an_alert_changes_only_that_field(analyst, query_id):
    created = analyst.post(
        "/api/alerts",
        json={
            "name": "No rows",
            "saved_query_id": query_id,
            "condition": {"kind": "row_count", "op": "eq", "value": 0},
            "schedule": {"frequency": "daily", "time": "08:00", "timezone": "UTC"},
            "recipients": ["ops@example.com"],
        },
    ).get_json()

    paused = analyst.patch(f"/api/alerts/{created['id']}", json={"is_active": False})
    renotified = analyst.patch(f"/api/alerts/{created['id']}", json={"notify": "always"})
    refused = analyst.patch(f"/api/alerts/{created['id']}", json={"condition": {"kind": "row_count", "op": "~"}})

    assert paused.status_code == 200 and paused.get_json()["next_run_at"] is None
    assert renotified.get_json()["notify"] == "always" and renotified.get_json()["is_active"] is False
    assert renotified.get_json()["recipients"] == ["ops@example.com"]
    assert refused.status_code == 422 and "condition" in str(refused.get_json()["errors"])


def test_patching_a_saved_query_keeps_its_definition(analyst, query_id):
    response = analyst.patch(f"/api/saved-queries/{query_id}", json={"description": "One, as a number"})
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["description"] == "One, as a number" and after["sql"] == "select 1 as one"
    bad = analyst.patch(f"/api/saved-queries/{query_id}", json={"sql": "delete from t"})
    assert bad.status_code == 422 and "sql" in bad.get_json()["errors"]


def test_patching_a_dashboard_keeps_its_widgets(analyst, query_id):
    widgets = [{"title": "One", "saved_query_id": query_id, "chart": "table"}]
    created = analyst.post("/api/dashboards", json={"name": "Board", "widgets": widgets}).get_json()

    response = analyst.patch(f"/api/dashboards/{created['id']}", json={"shared": True})

    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["shared"] is True and after["name"] == "Board"
    assert [(w["title"], w["saved_query_id"]) for w in after["widgets"]] == [("One", query_id)]


def test_patching_a_data_source_keeps_its_password_until_its_host_changes(harness, admin):
    body = {
        "name": "Sales",
        "kind": "postgresql",
        "host": "127.0.0.1",
        "port": free_port(),
        "database": "sales",
        "username": "reader",
        "password": "pg-s3cret",
    }
    created = admin.post("/api/data-sources", json=body)
    assert created.status_code == 201, created.get_json()
    source_id = created.get_json()["id"]

    renamed = admin.patch(f"/api/data-sources/{source_id}", json={"name": "Sales (read-only)"})
    moved = admin.patch(f"/api/data-sources/{source_id}", json={"host": "127.0.0.2"})

    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json()["name"] == "Sales (read-only)" and renamed.get_json()["has_password"] is True
    assert moved.get_json()["has_password"] is False, "a password never follows a new host by itself"
    for response in (created, renamed, moved):
        assert "pg-s3cret" not in response.get_data(as_text=True)
    with harness.session_factory() as session:
        assert session.get(DataSource, uuid.UUID(source_id)).database == "sales"


def test_patching_email_settings_keeps_the_password_and_refuses_a_missing_config(admin):
    assert admin.patch("/api/email-config", json={"from_name": "Reports"}).status_code == 404
    config = {
        "host": "smtp.example.com",
        "port": 587,
        "username": "mailer",
        "password": "smtp-s3cret",
        "from_address": "reports@example.com",
    }
    assert admin.put("/api/email-config", json=config).status_code == 200

    renamed = admin.patch("/api/email-config", json={"from_name": "Weekly reports"})
    bad_port = admin.patch("/api/email-config", json={"port": 0})

    assert renamed.status_code == 200, renamed.get_json()
    body = renamed.get_json()
    assert (body["from_name"], body["host"], body["has_password"], body["source"]) == (
        "Weekly reports",
        "smtp.example.com",
        True,
        "own",
    )
    assert "smtp-s3cret" not in renamed.get_data(as_text=True)
    assert bad_port.status_code == 422 and "port" in bad_port.get_json()["errors"]


def test_the_openapi_document_lists_patch_with_optional_fields(analyst):
    spec = analyst.get("/api/openapi.json").get_json()
    for path in (
        "/api/scheduled-reports/{report_id}",
        "/api/alerts/{alert_id}",
        "/api/saved-queries/{query_id}",
        "/api/dashboards/{dashboard_id}",
        "/api/data-sources/{source_id}",
        "/api/email-config",
    ):
        assert "patch" in spec["paths"][path], path
    schema = spec["components"]["schemas"]["ReportPatch"]
    assert "required" not in schema and "is_active" in schema["properties"]


def test_an_error_in_a_list_item_names_the_item(analyst, report):
    response = analyst.patch(f"/api/scheduled-reports/{report['id']}", json={"cc": ["ok@example.com", "nope"]})
    assert response.status_code == 422
    body = response.get_json()
    assert body["errors"] == {"cc": {"1": [body["errors"]["cc"]["1"][0]]}}
    assert body["message"].startswith("cc.1: 'nope'")
