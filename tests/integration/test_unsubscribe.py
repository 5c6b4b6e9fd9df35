"""One-click unsubscribe on PostgreSQL: the signed link, the page, the POST, the owner's view, later runs."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.renderer.render import render_execution
from services.scheduler.dispatch import dispatch_due_reports
from shared import links, unsubscribe
from shared.clock import FixedClock
from shared.context import build_context
from shared.db import transaction
from shared.errors import NotFoundError
from shared.messaging import RecordingPublisher
from shared.models import DataSource, ReportExecution, SavedQuery, Unsubscription, User
from tests.conftest import build_harness

NOW = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)
FORM = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def harness(pg_url, tmp_path):
    api = build_harness(pg_url, tmp_path)
    api.clock = FixedClock(NOW)
    api.app.extensions["biapp"].clock = api.clock
    return api


@pytest.fixture
def owner(harness):
    return harness.create_user("ana@example.com", "analyst")


@pytest.fixture
def report(harness, owner) -> dict:
    with sqlite3.connect(f"{harness.settings.sqlite_root}/tiny.db") as conn:
        conn.execute("create table t (n integer)")
        conn.execute("insert into t values (1)")
    with transaction(harness.session_factory) as session:
        ana = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        source = DataSource(name="Tiny", kind="sqlite", path="tiny.db", options={}, owner_id=ana.id)
        session.add(source)
        session.flush()
        query = SavedQuery(name="n", kind="sql", data_source_id=source.id, sql="select n from t", owner_id=ana.id)
        session.add(query)
        session.flush()
        query_id = str(query.id)
    created = owner.post(
        "/api/scheduled-reports",
        json={
            "name": "Daily <numbers>",
            "saved_query_id": query_id,
            "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
            "recipients": ["ana@example.com", "Bo@Example.com"],
            "cc": ["cy@example.com"],
            "formats": ["csv"],
        },
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def link(harness, report, address: str) -> str:
    url = unsubscribe.url_for(harness.settings, unsubscribe.token_for(harness.settings, report["id"], address))
    return url.removeprefix(harness.settings.public_url)


def uuid_of(report: dict) -> uuid.UUID:
    return uuid.UUID(report["id"])


def planned(harness, execution_id) -> list[str]:
    with harness.session_factory() as session:
        return [p["address"] for p in session.get(ReportExecution, execution_id).recipients]


def test_the_link_is_signed_per_report_and_address_and_named_in_the_headers(harness, report):
    settings = harness.settings
    token = unsubscribe.token_for(settings, report["id"], "Bo@Example.com")
    assert unsubscribe.verify(settings, token) == (uuid_of(report), "bo@example.com")
    headers = unsubscribe.headers_for(settings, report["id"], "bo@example.com")
    assert headers == {
        "List-Unsubscribe": f"<{settings.public_url}/api/unsubscribe/{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    other_salt = links.sign(settings, uuid_of(report), expires_at=NOW)  # a download link's token
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), other_salt, "", "x.y"):
        with pytest.raises(NotFoundError):
            unsubscribe.verify(settings, bad)


def test_opening_the_link_asks_first_and_unsubscribes_nobody(harness, report):
    page = harness.client().get(link(harness, report, "bo@example.com"))
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "bo@example.com" in html and "Daily &lt;numbers&gt;" in html and "<numbers>" not in html
    assert '<form method="post">' in html and ">Unsubscribe</button>" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    with harness.session_factory() as session:
        assert session.execute(sa.select(Unsubscription)).first() is None


def test_one_click_post_records_it_once_and_the_owner_sees_who_and_when(harness, owner, report):
    path = link(harness, report, "bo@example.com")
    first = harness.client().request("POST", path, data=FORM)  # what a mail client sends (RFC 8058)
    assert first.status_code == 200 and "You are unsubscribed" in first.get_data(as_text=True)
    harness.clock.advance(hours=1)
    again = harness.client().request("POST", path, data=FORM, content_type="multipart/form-data")
    assert again.status_code == 200  # asking twice is fine; RFC 8058 prefers multipart bodies
    assert harness.client().request("POST", path).status_code == 200  # the page's button, or a bare POST

    listed = owner.get(f"/api/scheduled-reports/{report['id']}/unsubscriptions")
    assert listed.status_code == 200
    assert listed.get_json() == [{"address": "bo@example.com", "unsubscribed_at": "2024-03-29T12:00:00+00:00"}]
    assert owner.get(f"/api/scheduled-reports/{report['id']}").get_json()["unsubscribed"] == ["bo@example.com"]
    assert owner.get("/api/scheduled-reports").get_json()["items"][0]["unsubscribed"] == ["bo@example.com"]


def test_a_tampered_link_is_a_404_and_a_link_to_a_deleted_report_a_410(harness, owner, report):
    path = link(harness, report, "bo@example.com")
    tampered = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    for method in ("GET", "POST"):
        answer = harness.client().request(method, tampered, data=FORM)
        assert answer.status_code == 404 and answer.mimetype == "text/html"
    assert owner.delete(f"/api/scheduled-reports/{report['id']}").status_code == 204
    for method in ("GET", "POST"):
        assert harness.client().request(method, path, data=FORM).status_code == 410


def test_later_runs_skip_the_address_but_a_test_run_still_reaches_the_requester(harness, owner, report):
    for address in ("Bo@Example.com", "ana@example.com"):
        assert harness.client().request("POST", link(harness, report, address), data=FORM).status_code == 200

    manual = owner.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    assert planned(harness, manual) == ["cy@example.com"]
    test = owner.post(f"/api/scheduled-reports/{report['id']}/test").get_json()["execution_id"]
    assert planned(harness, test) == ["ana@example.com"]

    ctx = build_context(harness.settings, RecordingPublisher(), session_factory=harness.session_factory)
    due = datetime.fromisoformat(report["next_run_at"])
    [(scheduled, _delay)] = dispatch_due_reports(ctx, now=due)
    assert planned(harness, scheduled) == ["cy@example.com"]


def test_a_run_nobody_is_left_for_is_skipped_with_the_reason(harness, owner, report):
    for address in ("bo@example.com", "ana@example.com", "cy@example.com"):
        harness.client().request("POST", link(harness, report, address), data=FORM)
    execution_id = owner.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    ctx = build_context(harness.settings, RecordingPublisher(), session_factory=harness.session_factory)
    render_execution(ctx, execution_id)
    with harness.session_factory() as session:
        execution = session.get(ReportExecution, execution_id)
        assert execution.status == "skipped" and "unsubscribed" in execution.error
    assert ctx.publisher.sent == []


def test_the_owner_resubscribes_an_address_and_others_cannot_see_or_change_the_list(harness, owner, report):
    harness.client().request("POST", link(harness, report, "bo@example.com"), data=FORM)
    stranger = harness.create_user("eve@example.com", "analyst")
    base = f"/api/scheduled-reports/{report['id']}/unsubscriptions"
    assert stranger.get(base).status_code == 404
    assert stranger.delete(f"{base}/bo@example.com").status_code == 404

    assert owner.delete(f"{base}/BO@example.com").status_code == 204
    assert owner.delete(f"{base}/bo@example.com").status_code == 404  # not unsubscribed any more
    assert owner.get(base).get_json() == []
    manual = owner.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    assert planned(harness, manual) == ["ana@example.com", "Bo@example.com", "cy@example.com"]
