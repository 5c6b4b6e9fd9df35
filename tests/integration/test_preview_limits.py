"""Previews cannot starve the API: a real `biapp api` (gunicorn, its default threads) on PostgreSQL.

Seen before: 15 concurrent previews of `select pg_sleep(12)` took every pooled application-database
connection and another user's login took 10 s; previews ran up to the 300 s report timeout.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from shared import users
from shared.db import transaction
from shared.models import SavedQuery
from tests.integration.seeding import source_on_data_database
from tests.support import Process, base_env, free_port, make_settings, wait_until

PASSWORD = "correct horse battery"
SLEEP_S = 6


@pytest.fixture
def api_server(pg_url, amqp, tmp_path):
    port = free_port()
    env = base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_PREVIEW_TIMEOUT_S="3")
    process = Process(["api", "--host", "127.0.0.1", "--port", str(port)], env, log=tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(base), timeout=60, what="the API to be ready")
    yield base, make_settings(**env)
    process.stop()


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _seed(factory, data, settings, *, people: int, sleep_s: float) -> tuple[str, list[str]]:
    with transaction(factory) as session:
        owner = users.create_user(session, email="owner@example.com", password=PASSWORD, role="analyst")
        for n in range(people):
            users.create_user(session, email=f"user{n}@example.com", password=PASSWORD, role="viewer")
        users.create_user(session, email="late@example.com", password=PASSWORD, role="viewer")
        source = source_on_data_database(data, settings)
        session.add(source)
        session.flush()
        query = SavedQuery(
            name="Slow",
            kind="sql",
            data_source_id=source.id,
            owner_id=owner.id,
            shared=True,
            sql=f"select 1 as one from pg_sleep({sleep_s})",
        )
        session.add(query)
        session.flush()
        return str(query.id), [f"user{n}@example.com" for n in range(people)]


def _login(base: str, email: str) -> str:
    response = requests.post(f"{base}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    return response.json()["access_token"]


def _sleeping(data) -> int:
    with data.admin_engine.connect() as conn:
        return conn.exec_driver_sql(
            # The sleep runs inside a FETCH from a named cursor: look at what the backend waits on.
            "select count(*) from pg_stat_activity where wait_event = 'PgSleep'"
        ).scalar()


def test_logins_stay_fast_while_twelve_slow_previews_run(api_server, pg_session_factory, pg_data_database):
    base, settings = api_server
    query_id, emails = _seed(pg_session_factory, pg_data_database, settings, people=6, sleep_s=2.5)
    tokens = [_login(base, email) for email in emails for _ in range(2)]
    results: list[int] = []

    def preview(token: str) -> None:
        response = requests.post(
            f"{base}/api/saved-queries/{query_id}/preview", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=preview, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    wait_until(lambda: _sleeping(pg_data_database) >= 12, timeout=20, what="twelve previews running")

    started = time.monotonic()
    token = _login(base, "late@example.com")
    login_s = time.monotonic() - started
    me = requests.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    for thread in threads:
        thread.join(60)
    print(f"login while 12 previews ran: {login_s * 1000:.0f} ms")
    assert login_s < 1.0
    assert me.status_code == 200
    assert sorted(results) == [200] * 12


def test_a_third_preview_of_one_user_is_429_and_a_slow_one_stops_at_the_preview_limit(
    api_server, pg_session_factory, pg_data_database
):
    base, settings = api_server
    query_id, emails = _seed(pg_session_factory, pg_data_database, settings, people=1, sleep_s=SLEEP_S)
    token = _login(base, emails[0])
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base}/api/saved-queries/{query_id}/preview"
    results: list[tuple[int, dict, float]] = []

    def preview() -> None:
        began = time.monotonic()
        response = requests.post(url, headers=headers, timeout=60)
        results.append((response.status_code, response.json(), time.monotonic() - began))

    running = [threading.Thread(target=preview) for _ in range(2)]
    for thread in running:
        thread.start()
    wait_until(lambda: _sleeping(pg_data_database) >= 2, timeout=20, what="two previews running")
    third = requests.post(url, headers=headers, timeout=10)
    for thread in running:
        thread.join(60)

    assert third.status_code == 429 and "2 previews running" in third.json()["message"]
    assert [status for status, _, _ in results] == [422, 422]
    for _, body, elapsed in results:
        assert "BIAPP_PREVIEW_TIMEOUT_S" in body["message"]
        assert elapsed < SLEEP_S, "the preview limit (3 s) stopped the query, not the query's own end"
    assert _sleeping(pg_data_database) == 0, "the cancelled queries no longer run on the source"
    again = requests.post(url, headers=headers, timeout=30)
    assert again.status_code == 422, "slots are given back when previews end"
