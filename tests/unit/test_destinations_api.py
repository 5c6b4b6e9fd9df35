"""Destinations over HTTP: kinds side by side, secrets write-only, edits that keep secrets, test and rotate."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from shared import destinations as rules
from shared.db import transaction
from shared.models import Destination, SavedQuery, User
from shared.security.crypto import SecretBox
from tests.conftest import build_harness
from tests.integration.channel_receivers import Receivers

SLACK_TOKEN = "xoxb-1234-5678-abcdefSECRETTOKEN"


@pytest.fixture
def receivers():
    running = Receivers().start()
    yield running
    running.stop()


@pytest.fixture
def harness(sqlite_url, tmp_path):
    return build_harness(sqlite_url, tmp_path)


@pytest.fixture
def analyst(harness):
    return harness.create_user("ana@example.com", "analyst")


@pytest.fixture
def query_id(harness, analyst):
    with transaction(harness.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        return str(query.id)


def report_body(query_id, destinations=None, **extra):
    body = {
        "name": "Daily revenue",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "08:00", "timezone": "Europe/Berlin"},
        "formats": ["csv"],
        **extra,
    }
    if destinations is not None:
        body["destinations"] = destinations
    return body


def all_kinds(receivers):
    return [
        {"kind": "email", "address": "a@example.com"},
        {"kind": "email", "address": "c@example.com", "role": "cc"},
        {"kind": "webhook", "url": receivers.url("/hook/secret-path-1")},
        {"kind": "slack", "webhook_url": receivers.url("/services/T000/B000/secret-slack-path")},
        {"kind": "slack", "bot_token": SLACK_TOKEN, "channel": "C0123ABCD"},
        {"kind": "teams", "webhook_url": receivers.url("/workflows/secret-teams-path")},
    ]


def stored_secrets(harness) -> dict:
    box = SecretBox(harness.settings.fernet_keys)
    with transaction(harness.session_factory) as session:
        return {str(d.id): rules.open_secret(box, d) for d in session.execute(sa.select(Destination)).scalars()}


def test_every_kind_is_accepted_and_no_secret_ever_comes_back(analyst, query_id, receivers, harness):
    response = analyst.post("/api/scheduled-reports", json=report_body(query_id, all_kinds(receivers)))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    kinds = [(d["kind"], d["target"], d["has_secret"], d["icon"]) for d in created["destinations"]]
    assert kinds == [
        ("email", "a@example.com", False, "mail"),
        ("email", "c@example.com", False, "mail"),
        ("webhook", "127.0.0.1", True, "webhook"),
        ("slack", "127.0.0.1", True, "slack"),
        ("slack", "channel C0123ABCD", True, "slack"),
        ("teams", "127.0.0.1", True, "teams"),
    ]
    assert created["recipients"] == ["a@example.com"] and created["cc"] == ["c@example.com"]
    webhook = created["destinations"][2]
    assert webhook["signing_secret"].startswith("whsec_"), "shown once, at creation"
    fetched = analyst.get(f"/api/scheduled-reports/{created['id']}").get_json()
    text = json.dumps(created) + json.dumps(fetched) + json.dumps(analyst.get("/api/scheduled-reports").get_json())
    for secret in ("secret-path-1", "secret-slack-path", "secret-teams-path", SLACK_TOKEN):
        assert secret not in text
    assert "signing_secret" not in json.dumps(fetched)
    assert stored_secrets(harness)[webhook["id"]]["signing_secret"] == webhook["signing_secret"]


def test_an_edit_naming_destinations_by_id_keeps_their_secrets(analyst, query_id, receivers, harness):
    created = analyst.post("/api/scheduled-reports", json=report_body(query_id, all_kinds(receivers))).get_json()
    before = stored_secrets(harness)
    kept = [
        {"id": d["id"], "kind": d["kind"], **({"address": d["address"]} if d["kind"] == "email" else {})}
        for d in created["destinations"]
        if d["kind"] != "teams"
    ]
    response = analyst.put(f"/api/scheduled-reports/{created['id']}", json=report_body(query_id, kept))
    assert response.status_code == 200, response.get_json()
    after = stored_secrets(harness)
    assert len(after) == 5, "the Teams destination left out is removed"
    for destination_id, secret in after.items():
        assert secret == before[destination_id]
    assert "signing_secret" not in json.dumps(response.get_json())


def test_an_older_client_sending_only_recipients_keeps_the_other_destinations(analyst, query_id, receivers):
    created = analyst.post("/api/scheduled-reports", json=report_body(query_id, all_kinds(receivers))).get_json()
    response = analyst.put(
        f"/api/scheduled-reports/{created['id']}", json=report_body(query_id, recipients=["new@example.com"])
    )
    assert response.status_code == 200, response.get_json()
    kinds = [(d["kind"], d["target"]) for d in response.get_json()["destinations"]]
    assert ("email", "new@example.com") in kinds and ("email", "a@example.com") not in kinds
    assert [k for k, _ in kinds].count("slack") == 2 and ("webhook", "127.0.0.1") in kinds


@pytest.mark.parametrize(
    ("destination", "field"),
    [
        ({"kind": "webhook"}, "destinations.0.url"),
        ({"kind": "webhook", "url": "ftp://example.com/x"}, "destinations.0.url"),
        ({"kind": "webhook", "url": "http://8.8.8.8/hook"}, "destinations.0.url"),
        ({"kind": "webhook", "url": "https://user:pw@example.com/hook"}, "destinations.0.url"),
        ({"kind": "webhook", "url": "https://exa mple.com/hook"}, "destinations.0.url"),
        ({"kind": "webhook", "webhook_url": "https://example.com/x"}, "destinations.0.webhook_url"),
        ({"kind": "slack"}, "destinations.0.webhook_url"),
        ({"kind": "slack", "bot_token": "nope", "channel": "C0123ABCD"}, "destinations.0.bot_token"),
        ({"kind": "slack", "bot_token": SLACK_TOKEN}, "destinations.0.channel"),
        (
            {"kind": "slack", "bot_token": SLACK_TOKEN, "channel": "C1", "webhook_url": "https://a.example/x"},
            "destinations.0.webhook_url",
        ),
        ({"kind": "teams", "bot_token": SLACK_TOKEN, "channel": "C1"}, "destinations.0.bot_token"),
        ({"kind": "email"}, "destinations.0.address"),
        ({"kind": "email", "address": "not an address"}, "destinations.0.address"),
        ({"kind": "pigeon"}, "destinations.0.kind"),
        ({"kind": "webhook", "url": "https://example.com/x", "id": str(uuid.uuid4())}, "destinations.0.id"),
    ],
)
def test_bad_destinations_are_refused_naming_the_field(analyst, query_id, destination, field):
    response = analyst.post("/api/scheduled-reports", json=report_body(query_id, [destination]))
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    flat = json.dumps(errors)
    head, _, rest = field.partition(".")
    assert head in errors and all(part in flat for part in rest.split(".")), errors


def test_no_destination_at_all_is_refused(analyst, query_id):
    response = analyst.post("/api/scheduled-reports", json=report_body(query_id, []))
    assert response.status_code == 422 and "destinations" in response.get_json()["errors"]


def test_internal_targets_follow_the_outbound_policy(sqlite_url, tmp_path, receivers):
    strict = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="")
    client = strict.create_user("ana@example.com", "admin")
    with transaction(strict.session_factory) as session:
        owner = session.execute(sa.select(User)).scalar_one()
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        query_id = str(query.id)
    for url in (
        receivers.url("/hook"),
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest",
        "https://2130706433/x",
        "https://10.0.0.5/x",
    ):
        response = client.post("/api/scheduled-reports", json=report_body(query_id, [{"kind": "webhook", "url": url}]))
        assert response.status_code == 422, (url, response.get_json())
        assert "BIAPP_OUTBOUND_ALLOW" in json.dumps(response.get_json()["errors"])


def test_the_destination_test_reports_the_remote_answer(analyst, query_id, receivers):
    receivers.script("/ok", [200], body="ok")
    receivers.script("/gone", [404])
    created = analyst.post(
        "/api/scheduled-reports",
        json=report_body(
            query_id,
            [
                {"kind": "webhook", "url": receivers.url("/ok")},
                {"kind": "slack", "webhook_url": receivers.url("/gone")},
            ],
        ),
    ).get_json()
    url = f"/api/scheduled-reports/{created['id']}/destinations"
    good, bad = created["destinations"]
    answer = analyst.post(f"{url}/{good['id']}/test").get_json()
    assert answer == {"ok": True, "kind": "webhook", "target": "127.0.0.1", "outcome": "accepted", "answer": "200 ok"}
    answer = analyst.post(f"{url}/{bad['id']}/test").get_json()
    assert answer["ok"] is False and answer["outcome"] == "refused" and answer["answer"].startswith("404")
    assert analyst.post(f"{url}/{uuid.uuid4()}/test").status_code == 404


def test_rotating_a_signing_secret_shows_the_new_one_once(analyst, query_id, receivers, harness):
    created = analyst.post(
        "/api/scheduled-reports", json=report_body(query_id, [{"kind": "webhook", "url": receivers.url("/h")}])
    ).get_json()
    [hook] = created["destinations"]
    response = analyst.post(f"/api/scheduled-reports/{created['id']}/destinations/{hook['id']}/rotate-secret")
    assert response.status_code == 200
    rotated = response.get_json()["signing_secret"]
    assert rotated.startswith("whsec_") and rotated != hook["signing_secret"]
    assert stored_secrets(harness)[hook["id"]]["signing_secret"] == rotated


def test_someone_else_cannot_test_or_rotate_a_report_destination(harness, analyst, query_id, receivers):
    created = analyst.post(
        "/api/scheduled-reports", json=report_body(query_id, [{"kind": "webhook", "url": receivers.url("/h")}])
    ).get_json()
    other = harness.create_user("bo@example.com", "analyst")
    [hook] = created["destinations"]
    base = f"/api/scheduled-reports/{created['id']}/destinations/{hook['id']}"
    assert other.post(f"{base}/test").status_code in (403, 404)
    assert other.post(f"{base}/rotate-secret").status_code in (403, 404)


def test_alerts_take_destinations_too(analyst, query_id, receivers):
    body = {
        "name": "Too few orders",
        "saved_query_id": query_id,
        "condition": {"kind": "row_count", "op": "lt", "value": 10},
        "schedule": {"frequency": "daily", "time": "08:00", "timezone": "UTC"},
        "destinations": [{"kind": "teams", "webhook_url": receivers.url("/teams")}],
        "recipients": ["a@example.com"],
    }
    response = analyst.post("/api/alerts", json=body)
    assert response.status_code == 201, response.get_json()
    assert [d["kind"] for d in response.get_json()["destinations"]] == ["teams", "email"]
