"""What a new user meets in the first hour of the API: file links, which email settings apply, error messages
that say what to do, day names in schedules, how long to wait after a 429, and docs that work offline."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.models import Artifact, DataSource, ReportExecution, SavedQuery, User
from shared.storage import DatabaseStore
from tests.conftest import build_harness


@pytest.fixture
def harness(sqlite_url, tmp_path):
    return build_harness(sqlite_url, tmp_path, BIAPP_LOGIN_RATE_LIMIT="2 per minute")


@pytest.fixture
def analyst(harness):
    return harness.create_user("ana@example.com", "analyst")


@pytest.fixture
def query_id(harness, analyst):
    with transaction(harness.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        source = DataSource(name="Local", kind="sqlite", path="local.db", options={}, owner_id=owner.id)
        session.add(source)
        session.flush()
        query = SavedQuery(name="One", kind="sql", sql="select 1", data_source_id=source.id, owner_id=owner.id)
        session.add(query)
        session.flush()
        return str(query.id)


def _report(query_id: str, **schedule) -> dict:
    return {
        "name": "Daily",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "UTC", **schedule},
        "recipients": ["a@example.com"],
        "formats": ["csv"],
    }


# --- an execution's files ---------------------------------------------------------------------------------


def test_an_execution_lists_each_file_with_a_download_url_that_serves_it(harness, analyst, query_id):
    report = analyst.post("/api/scheduled-reports", json=_report(query_id)).get_json()
    now = datetime.now(UTC)
    content = b"region,revenue\nEMEA,1\n"
    with transaction(harness.session_factory) as session:
        execution = ReportExecution(
            report_id=uuid.UUID(report["id"]), trigger="manual", status="success", scheduled_for=now, queued_at=now
        )
        session.add(execution)
        session.flush()
        artifact = Artifact(
            execution_id=execution.id,
            format="csv",
            filename="daily.csv",
            content_type="text/csv",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            expires_at=now + timedelta(days=1),
        )
        session.add(artifact)
        DatabaseStore().save(session, artifact, io.BytesIO(content))
        execution_id, artifact_id = execution.id, artifact.id

    (listed,) = analyst.get(f"/api/executions/{execution_id}").get_json()["artifacts"]
    (in_history,) = analyst.get(f"/api/scheduled-reports/{report['id']}/executions").get_json()["items"]

    assert listed["download_url"] == f"/api/executions/{execution_id}/artifacts/{artifact_id}"
    assert in_history["artifacts"][0]["download_url"] == listed["download_url"]
    download = analyst.get(listed["download_url"])
    assert download.status_code == 200 and download.data == content


# --- which email settings apply -----------------------------------------------------------------------------

SYSTEM = {
    "host": "smtp.example.com",
    "port": 587,
    "username": "system-mailer",
    "password": "system-s3cret",
    "from_address": "reports@example.com",
    "from_name": "Reports",
}


def test_email_config_says_none_when_nothing_is_set(analyst):
    response = analyst.get("/api/email-config")
    assert response.status_code == 200
    body = response.get_json()
    assert body["source"] == "none" and body["host"] is None and "PUT /api/email-config" in body["note"]


def test_email_config_shows_the_system_default_and_says_so(harness, analyst):
    admin = harness.create_user("root@example.com", "admin")
    assert admin.put("/api/email-config?scope=system", json=SYSTEM).status_code == 200

    for_viewer = analyst.get("/api/email-config")
    for_admin = admin.get("/api/email-config")

    body = for_viewer.get_json()
    assert body["source"] == "system_default" and body["from_address"] == "reports@example.com"
    assert body["host"] is None and body["username"] is None, "only admins see the system default's server"
    assert "smtp.example.com" not in for_viewer.get_data(as_text=True)
    assert for_admin.get_json()["source"] == "system_default"
    assert for_admin.get_json()["host"] == "smtp.example.com" and for_admin.get_json()["has_password"] is True
    for response in (for_viewer, for_admin):
        assert "system-s3cret" not in response.get_data(as_text=True)


def test_email_config_prefers_your_own_settings(harness, analyst):
    admin = harness.create_user("root@example.com", "admin")
    admin.put("/api/email-config?scope=system", json=SYSTEM)
    own = {**SYSTEM, "host": "mail.ana.example", "password": "ana-s3cret", "from_address": "ana@example.com"}
    assert analyst.put("/api/email-config", json=own).status_code == 200

    response = analyst.get("/api/email-config")

    body = response.get_json()
    assert (body["source"], body["host"], body["from_address"]) == ("own", "mail.ana.example", "ana@example.com")
    assert "ana-s3cret" not in response.get_data(as_text=True)


# --- errors that say what to do --------------------------------------------------------------------------------


def test_a_body_sent_as_a_form_is_415_saying_it_must_be_json(analyst, query_id):
    response = analyst.post("/api/scheduled-reports", data={"name": "x"})
    assert response.status_code == 415
    assert "must be a JSON object" in response.get_json()["message"]


def test_a_body_that_is_not_valid_json_is_400_saying_so(analyst):
    response = analyst.post("/api/dashboards", data=b'{"name": "x",}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "must be a JSON object" in response.get_json()["message"]
    assert "not valid JSON" in response.get_json()["message"]


@pytest.mark.parametrize("body", [b"[]", b'"name"', b"42"])
def test_a_json_body_that_is_not_an_object_is_422_saying_so(analyst, body):
    response = analyst.post("/api/dashboards", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.get_json()["message"] == "The body must be a JSON object."


@pytest.mark.parametrize(("cron", "words"), [("61 * * * *", "is not a valid cron expression"), ("* * *", "3 fields")])
def test_a_cron_error_names_the_field_and_quotes_the_value(analyst, query_id, cron, words):
    body = _report(query_id, frequency="cron", cron=cron)
    response = analyst.post("/api/scheduled-reports", json=body)
    assert response.status_code == 422
    message = response.get_json()["message"]
    assert message.startswith("schedule.cron: ") and repr(cron) in message and words in message
    assert response.get_json()["errors"]["schedule"]["cron"]


def test_days_of_week_take_names_in_any_case_as_well_as_numbers(analyst, query_id):
    body = _report(query_id, frequency="weekly", days_of_week=["MON", "wed", "Friday", 6])
    response = analyst.post("/api/scheduled-reports", json=body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["schedule"]["days_of_week"] == [0, 2, 4, 6], "stored as numbers, Monday is 0"


def test_a_day_that_is_no_day_is_refused_naming_the_field(analyst, query_id):
    body = _report(query_id, frequency="weekly", days_of_week=["mon", "funday"])
    response = analyst.post("/api/scheduled-reports", json=body)
    assert response.status_code == 422
    assert response.get_json()["message"].startswith("schedule.days_of_week.1: 'funday' is not a day")


def test_a_429_says_how_many_seconds_to_wait_in_words_and_in_retry_after(harness, analyst):
    client = harness.client()
    for _ in range(2):
        assert client.post("/api/auth/login", json={"email": "ana@example.com", "password": "wrong"}).status_code == 401

    refused = client.post("/api/auth/login", json={"email": "ana@example.com", "password": "wrong"})

    assert refused.status_code == 429
    seconds = int(refused.headers["Retry-After"])
    assert 1 <= seconds <= 60
    assert f"Try again in {seconds} second" in refused.get_json()["message"]


# --- docs that work offline -------------------------------------------------------------------------------------


def test_api_docs_are_served_from_this_origin_only_and_their_files_load(harness):
    client = harness.app.test_client()
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href|data-spec-url)="([^"]+)"', html)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "<script>" not in html, "no inline script: a strict Content-Security-Policy allows the page"
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content_length or response.data, url
    assert "validatorUrl: null" in client.get("/api/docs/start.js").get_data(as_text=True), "no call to swagger.io"
    assert client.get("/api/docs/assets/index.html").status_code == 404, "only Swagger UI's runtime files"
