"""The web console's server side: its static page under a strict CSP, the cookie session with CSRF
protection (next to the untouched bearer tokens), and the schedule preview with daylight-saving notes."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask_jwt_extended import create_access_token

from services.api.console.views import CONTENT_SECURITY_POLICY
from tests.conftest import build_harness

PASSWORD = "correct horse battery"
# src=//…, href="https://…", import … from "https://…", url(https://…), fetch("https://…")
ELSEWHERE = r"""(src|href)=["']?(https?:)?//|from\s*["'](https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["'`]https?:"""
STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "console" / "static"


def cookies_of(response) -> dict[str, str]:
    """name → the whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in response.headers.getlist("Set-Cookie")}


def open_session(api, email="ana@example.com", role="analyst"):
    api.create_user(email, role)
    client = api.app.test_client()
    response = client.post("/api/auth/session", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return client, response


def csrf_of(client) -> str:
    return client.get_cookie("biapp_csrf", path="/").value


def test_the_console_is_served_at_the_root_under_a_strict_content_security_policy(api):
    response = api.app.test_client().get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = response.get_data(as_text=True)
    assert '<script type="module" src="/console/static/js/main.js"></script>' in page
    script = api.app.test_client().get("/console/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert script.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_every_console_file_ships_in_the_package_and_has_no_inline_code_or_outside_asset():
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".html", ".css", ".js", ".svg"}
    for path in files:
        text = path.read_text()
        assert not re.search(ELSEWHERE, text), f"{path.name} loads something from another site"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, f"{path.name} builds HTML from strings"
        assert not re.search(r"\sstyle=", text), f"{path.name} has an inline style"
        assert "eval(" not in text and "new Function" not in text
    page = (STATIC / "index.html").read_text()
    assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", page)), "an inline script"


def test_a_session_sets_an_httponly_cookie_and_a_readable_csrf_cookie_and_no_token_in_the_body(api):
    _client, response = open_session(api)
    body = response.get_json()
    assert body["email"] == "ana@example.com" and "access_token" not in body
    cookies = cookies_of(response)
    session, csrf = cookies["biapp_session"], cookies["biapp_csrf"]
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/api/" in session
    assert "HttpOnly" not in csrf and "SameSite=Lax" in csrf and "Path=/;" in csrf + ";"
    assert "Secure" not in session  # plain http on loopback: a Secure cookie would never come back


def test_the_cookies_are_secure_over_https_or_when_the_public_address_is_https(api, sqlite_url, tmp_path):
    api.create_user("ana@example.com")
    over_tls = api.app.test_client().post(
        "/api/auth/session", json={"email": "ana@example.com", "password": PASSWORD}, base_url="https://reports.example"
    )
    assert all("Secure" in line for line in cookies_of(over_tls).values())
    behind_proxy = build_harness(sqlite_url, tmp_path, BIAPP_PUBLIC_URL="https://reports.example.com")
    response = behind_proxy.app.test_client().post(
        "/api/auth/session", json={"email": "ana@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert all("Secure" in line for line in cookies_of(response).values())


def test_a_cookie_reads_freely_but_changes_need_the_csrf_header(api):
    client, _ = open_session(api)
    assert client.get("/api/auth/me").get_json()["email"] == "ana@example.com"
    body = {"name": "Orders", "data_source_id": "00000000-0000-0000-0000-000000000000", "sql": "select 1"}
    refused = client.post("/api/saved-queries", json=body)
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "csrf_failed"
    wrong = client.post("/api/saved-queries", json=body, headers={"X-CSRF-TOKEN": "not-the-value"})
    assert wrong.status_code in (401, 403)
    allowed = client.post("/api/saved-queries", json=body, headers={"X-CSRF-TOKEN": csrf_of(client)})
    assert allowed.status_code == 422  # past authentication: the data source does not exist
    assert allowed.get_json()["errors"] == {"data_source_id": ["no such data source"]}


def test_bearer_tokens_work_as_before_without_any_csrf_header(api):
    ana = api.create_user("ana@example.com")
    assert ana.post("/api/auth/logout").status_code == 204


def test_closing_the_session_revokes_its_token_and_clears_both_cookies(api):
    client, _ = open_session(api)
    token = client.get_cookie("biapp_session", path="/api/").value
    assert client.delete("/api/auth/session").status_code == 403  # a logout is a change too
    response = client.delete("/api/auth/session", headers={"X-CSRF-TOKEN": csrf_of(client)})
    assert response.status_code == 204
    cleared = cookies_of(response)
    assert {"biapp_session", "biapp_csrf"} <= set(cleared)
    assert all("Expires=Thu, 01 Jan 1970" in line for line in cleared.values())
    assert client.get("/api/auth/me").status_code == 401
    stolen = api.app.test_client()
    stolen.set_cookie("biapp_session", token, path="/api/")
    replay = stolen.get("/api/auth/me")
    assert replay.status_code == 401 and "revoked" in replay.get_json()["message"]
    assert api.app.test_client().delete("/api/auth/session").status_code == 204  # nothing to close: still fine


def test_logout_with_the_cookie_revokes_it_too(api):
    client, _ = open_session(api)
    token = client.get_cookie("biapp_session", path="/api/").value
    assert client.post("/api/auth/logout", headers={"X-CSRF-TOKEN": csrf_of(client)}).status_code == 204
    replay = api.app.test_client()
    replay.set_cookie("biapp_session", token, path="/api/")
    assert replay.get("/api/auth/me").status_code == 401


def test_a_password_change_from_the_console_moves_the_session_to_a_fresh_cookie(api):
    client, _ = open_session(api)
    old = client.get_cookie("biapp_session", path="/api/").value
    response = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long password"},
        headers={"X-CSRF-TOKEN": csrf_of(client)},
    )
    assert response.status_code == 200
    assert "biapp_session" in cookies_of(response)
    assert client.get("/api/auth/me").status_code == 200
    stale = api.app.test_client()
    stale.set_cookie("biapp_session", old, path="/api/")
    assert stale.get("/api/auth/me").status_code == 401


def test_a_session_in_use_is_renewed_past_half_its_lifetime_on_a_read(api):
    client, response = open_session(api)
    user_id = response.get_json()["id"]
    assert "biapp_session" not in cookies_of(client.get("/api/auth/me"))  # fresh: left alone
    with api.app.app_context():
        aging = create_access_token(
            identity=user_id, additional_claims={"role": "analyst", "pwv": 0}, expires_delta=timedelta(seconds=120)
        )
    client.set_cookie("biapp_session", aging, path="/api/")
    renewed = cookies_of(client.get("/api/auth/me"))
    assert "biapp_session" in renewed and "biapp_csrf" in renewed
    assert "HttpOnly" in renewed["biapp_session"]


def test_session_logins_fail_like_logins(api):
    api.create_user("ana@example.com")
    response = api.app.test_client().post("/api/auth/session", json={"email": "ana@example.com", "password": "nope"})
    assert response.status_code == 401
    assert response.get_json() == {"code": "unauthorized", "message": "Wrong email or password."}
    assert "Set-Cookie" not in response.headers
    assert api.app.test_client().post("/api/auth/session", data="email=a").status_code in (400, 415, 422)


@pytest.fixture
def ana(api):
    return api.create_user("ana@example.com")


def test_the_schedule_preview_names_daylight_saving_gaps_and_folds(ana):
    schedule = {"frequency": "daily", "time": "02:30", "timezone": "Europe/Berlin"}
    response = ana.post("/api/schedules/next-runs", json={"schedule": schedule, "count": 366})
    assert response.status_code == 200
    runs = response.get_json()
    gaps = [run for run in runs if run["dst"] == "gap"]
    folds = [run for run in runs if run["dst"] == "fold"]
    assert len(gaps) == 1 and len(folds) == 1
    assert gaps[0]["at_local"].endswith("T03:00:00+02:00")
    assert "02:30 does not exist" in gaps[0]["note"] and "runs at 03:00" in gaps[0]["note"]
    assert folds[0]["at_local"].endswith("T02:30:00+02:00") and "happens twice" in folds[0]["note"]
    assert all(run["note"] is None for run in runs if run["dst"] is None)


def test_the_schedule_preview_names_the_field_in_error(ana):
    response = ana.post("/api/schedules/next-runs", json={"schedule": {"frequency": "cron", "cron": "every day"}})
    assert response.status_code == 422
    assert "cron" in response.get_json()["errors"]["schedule"]
    assert ana.client.post("/api/schedules/next-runs", json={"schedule": {"frequency": "daily"}}).status_code == 401


def test_a_saved_reports_next_runs_carry_the_same_notes(api, ana):
    import sqlite3

    admin = api.create_user("root@example.com", "admin")
    with sqlite3.connect(api.settings.sqlite_root + "/tiny.db") as conn:
        conn.execute("create table t (x integer)")
    source = admin.post("/api/data-sources", json={"name": "Tiny", "kind": "sqlite", "path": "tiny.db"}).get_json()
    sql = {"name": "All", "data_source_id": source["id"], "sql": "select x from t"}
    query = ana.post("/api/saved-queries", json=sql)
    report = ana.post(
        "/api/scheduled-reports",
        json={
            "name": "Night",
            "saved_query_id": query.get_json()["id"],
            "schedule": {"frequency": "daily", "time": "02:30", "timezone": "Europe/Berlin"},
            "recipients": ["a@example.com"],
            "formats": ["csv"],
        },
    ).get_json()
    runs = ana.get(f"/api/scheduled-reports/{report['id']}/next-runs?count=366").get_json()
    assert {run["dst"] for run in runs} == {None, "gap", "fold"}
