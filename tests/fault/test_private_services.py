"""The fault suite's own services behave as the tests expect: they stop, refuse, and come back."""

from __future__ import annotations

import psycopg
import pytest


def test_private_postgres_stops_refuses_and_comes_back_with_its_data(private_postgres):
    print(f"\nprivate PostgreSQL on port {private_postgres.port} ready in {private_postgres.started_in:.2f}s")
    private_postgres.create_database("kept")
    with psycopg.connect(private_postgres.dsn("kept"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        assert conn.execute("SHOW fsync").fetchone() == ("off",)

    private_postgres.stop()
    assert not private_postgres.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(private_postgres.dsn(), connect_timeout=2)

    private_postgres.start()
    private_postgres.restart(mode="immediate")  # a crash: recovery on start
    with psycopg.connect(private_postgres.dsn("kept")) as conn:
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
