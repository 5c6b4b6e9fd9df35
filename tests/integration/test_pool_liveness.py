"""Pooled PostgreSQL connections: a dead one is replaced before use, a live one is used without a ping.

The server end of a pooled connection is ended here with pg_terminate_backend (what a restart, a
failover or an idle timeout does to it), on the shared server, for this test's own connections only.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from shared.db import make_engine
from tests.conftest import PG_ADMIN_DSN


def _admin():
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)


def _terminate(pids: set[int]) -> None:
    with _admin() as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)).fetchone()[0]:
            assert time.monotonic() < deadline, "the backends did not end"
            time.sleep(0.05)


@pytest.fixture
def engine(pg_database_url):
    engine = make_engine(pg_database_url)
    yield engine
    engine.dispose()


def _pid(connection) -> int:
    return connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_ended_by_the_server_is_replaced_before_it_is_used(engine):
    with engine.connect() as a, engine.connect() as b:
        pids = {_pid(a), _pid(b)}
    _terminate(pids)
    for _ in range(3):  # every pooled connection was dead: none of them fails a statement
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 41 + 1")).scalar_one() == 42
            assert _pid(connection) not in pids


def test_a_live_pooled_connection_is_used_without_a_ping(engine):
    marker = "SELECT 'liveness-marker' AS marker"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:  # no ROLLBACK after it
        pid = _pid(connection)
        connection.execute(sa.text(marker))
    with engine.connect() as connection:  # the same pooled connection, checked out again
        with _admin() as admin:
            last = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        assert last == marker  # nothing (no `SELECT 1`) was sent at checkout
        assert _pid(connection) == pid


def test_the_api_answers_after_its_connections_were_ended(pg_url, tmp_path):
    from tests.conftest import build_harness

    harness = build_harness(pg_url, tmp_path)
    engine = harness.session_factory.kw["bind"]
    try:
        admin = harness.create_user("liveness@example.com", role="admin")
        assert admin.get("/api/scheduled-reports").status_code == 200
        with _admin() as server:
            database = engine.url.database
            pids = {
                row[0]
                for row in server.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                    " AND application_name = ''",
                    (database,),
                )
            }
        assert pids
        _terminate(pids)
        for _ in range(3):
            response = admin.get("/api/scheduled-reports")
            assert response.status_code == 200, response.get_json()
            assert admin.post("/api/data-sources", json={}).status_code == 422  # a write request too
    finally:
        engine.dispose()
