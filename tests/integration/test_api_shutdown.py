"""`biapp api` on SIGTERM finishes the requests it is serving, then exits cleanly."""

from __future__ import annotations

import signal
import threading

import pytest
import requests
import sqlalchemy as sa

from shared import users
from shared.db import transaction
from shared.models import SavedQuery
from tests.integration.seeding import source_on_data_database
from tests.support import Process, base_env, free_port, make_settings, wait_until

PASSWORD = "correct horse battery"


@pytest.fixture
def api_process(pg_url, amqp, tmp_path):
    port = free_port()
    env = base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_LOG_FORMAT="text")
    process = Process(
        ["api", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"], env, log=tmp_path / "api.log"
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(base), timeout=60, what="the API to be ready")
    yield process, base, make_settings(**env)
    process.stop()


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_sigterm_lets_the_request_in_flight_finish_then_the_server_exits(
    api_process, pg_data_database, pg_session_factory
):
    process, base, settings = api_process
    with transaction(pg_session_factory) as session:
        owner = users.create_user(session, email="ana@example.com", password=PASSWORD, role="analyst")
        source = source_on_data_database(pg_data_database, settings)
        session.add(source)
        session.flush()
        query = SavedQuery(
            name="Slow",
            kind="sql",
            data_source_id=source.id,
            owner_id=owner.id,
            sql="select 42 as answer from pg_sleep(3)",
        )
        session.add(query)
        session.flush()
        query_id = str(query.id)
    token = requests.post(
        f"{base}/api/auth/login", json={"email": "ana@example.com", "password": PASSWORD}, timeout=10
    ).json()["access_token"]

    result: dict = {}

    def slow_preview():
        response = requests.post(
            f"{base}/api/saved-queries/{query_id}/preview",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        result["status"], result["body"] = response.status_code, response.json()

    in_flight = threading.Thread(target=slow_preview)
    in_flight.start()
    # The query sleeps 3 s on the server; wait until PostgreSQL is running it, then stop the API.
    wait_until(lambda: _sleeping_backends(pg_session_factory) > 0 or result, timeout=10, what="the slow query to start")
    assert not result, result  # still running when the signal goes
    process.proc.send_signal(signal.SIGTERM)  # to the gunicorn master only, as Kubernetes does through tini
    in_flight.join(30)

    assert result.get("status") == 200, result
    assert result["body"]["rows"] == [[42]]
    assert process.proc.wait(30) == 0
    assert not _ready(base)  # no longer listening


def _sleeping_backends(factory) -> int:
    with factory() as session:
        return session.execute(
            sa.text("select count(*) from pg_stat_activity where wait_event = 'PgSleep'")
        ).scalar_one()
