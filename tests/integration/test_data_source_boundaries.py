"""Data sources stay inside what an admin granted: real PostgreSQL and MariaDB logins of every kind.

A superuser, a replication or bypass-RLS login, a member of the server-file roles, a MySQL user
with FILE or SUPER: refused at save, at /test and when a run opens the source. The application's
own database is never a source, however it is spelled. A stored password follows its host, and
nothing a query leaves on a pooled connection reaches the next query.
"""

from __future__ import annotations

import os
import socket
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from shared.db import transaction
from shared.errors import DataSourceRefusedError
from shared.models import DataSource
from shared.query.sources import SourceEngines
from shared.security.crypto import SecretBox
from tests.conftest import PG_ADMIN_DSN, build_harness, mysql_admin

ROLE_PASSWORD = "role-secret"


@pytest.fixture
def harness(pg_url, tmp_path):
    return build_harness(pg_url, tmp_path)


@pytest.fixture
def admin(harness):
    return harness.create_user("admin@example.com", role="admin")


@pytest.fixture
def pg_role(pg_data_database):
    """Make a login with the given attributes / role memberships that can read the data database."""
    made: list[str] = []

    def make(attributes: str = "", member_of: str | None = None) -> str:
        name = f"biapp_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE \"{name}\" LOGIN {attributes} PASSWORD '{ROLE_PASSWORD}'")
            conn.execute(f'GRANT CONNECT ON DATABASE "{pg_data_database.database}" TO "{name}"')
            if member_of:
                conn.execute(f'GRANT {member_of} TO "{name}"')
        made.append(name)
        return name

    yield make
    for name in made:
        pg_data_database.execute(f'DROP OWNED BY "{name}"')
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _body(data, **overrides) -> dict:
    body = {"name": "Sales", **data.source_fields(), "password": ROLE_PASSWORD, "options": {}}
    body.update(overrides)
    return body


def _count_sources(harness) -> int:
    with harness.session_factory() as session:
        return session.execute(sa.select(sa.func.count()).select_from(DataSource)).scalar()


@pytest.mark.parametrize(
    ("attributes", "member_of", "words"),
    [
        ("SUPERUSER", None, "superuser"),
        ("REPLICATION", None, "replication"),
        ("BYPASSRLS", None, "bypass row-level security"),
        ("", "pg_read_server_files", "pg_read_server_files"),
        ("", "pg_write_server_files", "pg_write_server_files"),
        ("", "pg_execute_server_program", "pg_execute_server_program"),
    ],
)
def test_a_privileged_postgres_login_is_refused_at_save(
    harness, admin, pg_data_database, pg_role, attributes, member_of, words
):
    login = pg_role(attributes, member_of)
    response = admin.post("/api/data-sources", json=_body(pg_data_database, username=login))
    assert response.status_code == 422, response.get_json()
    message = response.get_json()["errors"]["username"][0]
    assert words in message and "read-only login" in message
    assert _count_sources(harness) == 0, "nothing is saved"


def test_the_postgres_superuser_itself_is_refused(harness, admin, pg_data_database):
    response = admin.post("/api/data-sources", json=_body(pg_data_database, username="postgres"))
    assert response.status_code == 422 and "superuser" in response.get_json()["errors"]["username"][0]


def test_a_read_only_login_is_accepted_without_a_warning(admin, pg_data_database):
    created = admin.post("/api/data-sources", json=_body(pg_data_database, password=pg_data_database.password))
    assert created.status_code == 201, created.get_json()
    tested = admin.post(f"/api/data-sources/{created.get_json()['id']}/test").get_json()
    assert tested["ok"] is True and tested["warning"] is None


def test_a_login_that_can_write_is_accepted_with_a_warning(admin, pg_data_database, pg_role):
    writer = pg_role()
    pg_data_database.execute(
        "CREATE TABLE IF NOT EXISTS boundary_notes (id int)", f'GRANT INSERT ON boundary_notes TO "{writer}"'
    )
    created = admin.post("/api/data-sources", json=_body(pg_data_database, username=writer))
    assert created.status_code == 201
    tested = admin.post(f"/api/data-sources/{created.get_json()['id']}/test").get_json()
    assert tested["ok"] is True and "can change data" in tested["warning"] and "boundary_notes" in tested["warning"]


def test_a_login_granted_superuser_after_saving_stops_at_its_next_use(harness, admin, pg_data_database, pg_role):
    login = pg_role()
    source_id = admin.post("/api/data-sources", json=_body(pg_data_database, username=login)).get_json()["id"]
    query = admin.post(
        "/api/saved-queries", json={"name": "One", "data_source_id": source_id, "sql": "select 1 as one"}
    ).get_json()
    assert admin.post(f"/api/saved-queries/{query['id']}/preview").status_code == 200
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{login}" SUPERUSER')

    preview = admin.post(f"/api/saved-queries/{query['id']}/preview")
    tested = admin.post(f"/api/data-sources/{source_id}/test")

    assert preview.status_code == 422 and "superuser" in preview.get_json()["message"]
    assert tested.status_code == 422


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", socket.gethostname()])
def test_the_application_database_is_never_a_data_source(harness, admin, pg_url, pg_reader, host):
    app_database = sa.engine.make_url(pg_url).database
    body = {
        "name": "Own",
        "kind": "postgresql",
        "host": host,
        "port": 5432,
        "database": app_database,
        "username": pg_reader.username,
        "password": ROLE_PASSWORD,
    }
    response = admin.post("/api/data-sources", json=body)
    assert response.status_code == 422
    assert "application's own database" in response.get_json()["errors"]["database"][0]
    assert _count_sources(harness) == 0


def test_a_database_holding_the_application_tables_is_refused_under_any_name(harness, admin, pg_data_database):
    """Reached through an alias no resolver can see through, the app's tables still give it away."""
    pg_data_database.execute(
        "CREATE TABLE IF NOT EXISTS report_executions (id int)",
        "CREATE TABLE IF NOT EXISTS scheduled_reports (id int)",
        "CREATE TABLE IF NOT EXISTS alembic_version (version_num text)",
    )
    try:
        response = admin.post("/api/data-sources", json=_body(pg_data_database, password=pg_data_database.password))
    finally:
        pg_data_database.execute(
            "DROP TABLE report_executions", "DROP TABLE scheduled_reports", "DROP TABLE alembic_version"
        )
    assert response.status_code == 422 and "application's own database" in response.get_json()["message"]


@pytest.mark.parametrize("change", [{"host": "localhost"}, {"port": 5433}, {"username": "someone_else"}])
def test_changing_where_a_source_connects_without_the_password_clears_it(admin, pg_data_database, change):
    created = admin.post("/api/data-sources", json=_body(pg_data_database, password="kept-secret")).get_json()
    assert created["has_password"] is True
    same = {k: v for k, v in _body(pg_data_database, name="Renamed").items() if k != "password"}
    assert admin.put(f"/api/data-sources/{created['id']}", json=same).get_json()["has_password"] is True
    moved = {**same, **change}
    updated = admin.put(f"/api/data-sources/{created['id']}", json=moved)
    assert updated.status_code == 200 and updated.get_json()["has_password"] is False


# --- MySQL / MariaDB ---------------------------------------------------------------------


@pytest.fixture
def mysql_login(mysql_reader):
    made: list[str] = []

    def make(privileges: str) -> str:
        name = f"biapp_t_{os.getpid()}_{uuid.uuid4().hex[:4]}"
        made.append(name)  # before the grants: a failed one must not leave the user behind
        with mysql_admin() as conn, conn.cursor() as cursor:
            for host in ("%", "localhost"):
                escaped = host.replace("%", "%%")  # PyMySQL formats statements that have arguments
                cursor.execute(f"CREATE USER '{name}'@'{escaped}' IDENTIFIED BY %s", (ROLE_PASSWORD,))
                cursor.execute(f"GRANT SELECT ON `{mysql_reader.database}`.* TO '{name}'@'{host}'")
                cursor.execute(f"GRANT {privileges} ON *.* TO '{name}'@'{host}'")
        return name

    yield make
    with mysql_admin() as conn, conn.cursor() as cursor:
        for name in made:
            for host in ("%", "localhost"):
                cursor.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


def _mysql_body(reader, username, password) -> dict:
    return {
        "name": "Shop",
        "kind": "mysql",
        "host": reader.host,
        "port": reader.port,
        "database": reader.database,
        "username": username,
        "password": password,
        "options": {},
    }


@pytest.mark.parametrize("privileges", ["FILE", "SUPER"])
def test_a_mysql_login_with_file_or_super_is_refused(admin, mysql_reader, mysql_login, privileges):
    login = mysql_login(privileges)
    response = admin.post("/api/data-sources", json=_mysql_body(mysql_reader, login, ROLE_PASSWORD))
    assert response.status_code == 422, response.get_json()
    assert privileges in response.get_json()["errors"]["username"][0]


def test_mysql_root_is_refused_and_the_select_only_reader_accepted(admin, mysql_reader):
    root = admin.post("/api/data-sources", json=_mysql_body(mysql_reader, "root", ""))
    reader = admin.post(
        "/api/data-sources", json=_mysql_body(mysql_reader, mysql_reader.username, mysql_reader.password)
    )
    assert root.status_code == 422
    assert reader.status_code == 201
    tested = admin.post(f"/api/data-sources/{reader.get_json()['id']}/test").get_json()
    assert tested["ok"] is True and tested["warning"] is None


# --- pooled connections come back clean ----------------------------------------------------


def _engines(harness) -> SourceEngines:
    return SourceEngines(harness.settings, SecretBox(harness.settings.fernet_keys))


def _saved_source(harness, **fields) -> DataSource:
    with transaction(harness.session_factory) as session:
        source = DataSource(name="Pool", options={}, **fields)
        session.add(source)
    return source


def test_a_postgres_connection_is_reset_before_reuse(harness, pg_data_database):
    source = _saved_source(harness, **pg_data_database.source_fields())
    engines = _engines(harness)
    try:
        engine = engines.get(source)
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("select pg_backend_pid()").scalar()
            conn.exec_driver_sql("select pg_advisory_lock(4242), set_config('application_name', 'dirty', false)")
            conn.commit()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select pg_backend_pid()").scalar() == pid, "the pooled connection is reused"
            assert conn.exec_driver_sql("show application_name").scalar() != "dirty"
            locks = conn.exec_driver_sql(
                "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
            ).scalar()
            assert locks == 0
    finally:
        engines.dispose()


def test_a_mysql_connection_is_reset_before_reuse(harness, mysql_reader):
    source = _saved_source(
        harness,
        kind="mysql",
        host=mysql_reader.host,
        port=mysql_reader.port,
        database=mysql_reader.database,
        username=mysql_reader.username,
        password_encrypted=SecretBox(harness.settings.fernet_keys).encrypt(mysql_reader.password),
    )
    engines = _engines(harness)
    try:
        engine = engines.get(source)
        with engine.connect() as conn:
            thread = conn.exec_driver_sql("select connection_id()").scalar()
            conn.exec_driver_sql("select get_lock('biapp_test_lock', 0), @dirty := 1")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select connection_id()").scalar() == thread
            assert conn.exec_driver_sql("select @dirty").scalar() is None
            assert conn.exec_driver_sql("select is_used_lock('biapp_test_lock')").scalar() is None
            assert conn.exec_driver_sql("select 'Grüße 東京'").scalar() == "Grüße 東京", "the character set survives"
    finally:
        engines.dispose()


def test_refusals_are_data_source_errors_with_a_field():
    error = DataSourceRefusedError("username", "x")
    assert error.status == 422 and error.errors == {"username": ["x"]}
