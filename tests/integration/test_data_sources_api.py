"""Data sources over HTTP against real PostgreSQL: secrets stay secret, test and introspection work."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from shared.models import DataSource
from tests.conftest import build_harness
from tests.integration import test_query_sales_db as query_fixtures
from tests.support import free_port

sales_db = query_fixtures.sales_db
PASSWORD = "s3cr3t-Pässword'; --"


@pytest.fixture
def harness(pg_url, tmp_path):
    return build_harness(pg_url, tmp_path)


@pytest.fixture
def admin(harness):
    return harness.create_user("admin@example.com", role="admin")


@pytest.fixture
def source_body(pg_reader):
    """The body of a data source reading `database` as the session's reader login."""

    def build(database: str, **overrides) -> dict:
        body = {
            "name": "Sales",
            "kind": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "database": database,
            "username": pg_reader.username,
            # Trust auth ignores it; what matters here is that it never comes back out.
            "password": PASSWORD,
            "options": {"sslmode": "disable"},
        }
        body.update(overrides)
        return body

    return build


def test_the_password_is_never_returned_and_not_stored_in_plaintext(harness, admin, sales_db, source_body, caplog):
    caplog.set_level(logging.DEBUG)
    created = admin.post("/api/data-sources", json=source_body(sales_db))
    assert created.status_code == 201
    source_id = created.get_json()["id"]
    responses = [
        created,
        admin.get("/api/data-sources"),
        admin.get(f"/api/data-sources/{source_id}"),
        admin.put(f"/api/data-sources/{source_id}", json=source_body(sales_db, name="Sales 2")),
        admin.post(f"/api/data-sources/{source_id}/test"),
        admin.post(f"/api/data-sources/{source_id}/test"),
    ]
    for response in responses:
        assert PASSWORD not in response.get_data(as_text=True)
        assert "password_encrypted" not in response.get_data(as_text=True)
    assert created.get_json()["has_password"] is True
    assert PASSWORD not in caplog.text
    with harness.session_factory() as session:
        stored = session.execute(sa.select(DataSource.password_encrypted)).scalar_one()
    assert stored and PASSWORD not in stored and stored.startswith("gAAAA")  # a Fernet token


def test_a_put_without_password_keeps_it_and_an_empty_one_clears_it(harness, admin, sales_db, source_body):
    source_id = admin.post("/api/data-sources", json=source_body(sales_db)).get_json()["id"]
    body = source_body(sales_db)
    del body["password"]
    assert admin.put(f"/api/data-sources/{source_id}", json=body).get_json()["has_password"] is True
    assert (
        admin.put(f"/api/data-sources/{source_id}", json={**body, "password": ""}).get_json()["has_password"] is False
    )


def test_connection_test_succeeds_and_explains_failures(admin, sales_db, source_body):
    good = admin.post("/api/data-sources", json=source_body(sales_db)).get_json()
    assert admin.post(f"/api/data-sources/{good['id']}/test").get_json()["ok"] is True

    closed = admin.post("/api/data-sources", json=source_body(sales_db, port=free_port())).get_json()
    result = admin.post(f"/api/data-sources/{closed['id']}/test").get_json()
    assert result["ok"] is False and "refused" in result["reason"]

    missing = admin.post("/api/data-sources", json=source_body("no_such_database_here")).get_json()
    result = admin.post(f"/api/data-sources/{missing['id']}/test").get_json()
    assert result["ok"] is False and "does not exist" in result["reason"]


def test_tables_and_columns_are_introspected(admin, sales_db, source_body):
    source = admin.post("/api/data-sources", json=source_body(sales_db)).get_json()
    tables = admin.get(f"/api/data-sources/{source['id']}/tables").get_json()["items"]
    assert {"name": "sales.orders", "kind": "table"} in tables
    columns = admin.get(f"/api/data-sources/{source['id']}/tables/sales.orders/columns").get_json()["items"]
    assert {c["name"]: c["type"] for c in columns} == {
        "id": "integer",
        "region": "string",
        "customer": "string",
        "quantity": "integer",
        "amount": "decimal",
        "order_date": "date",
        "created_at": "datetime",
        "paid": "boolean",
    }
    assert admin.get(f"/api/data-sources/{source['id']}/tables/sales.nope/columns").status_code == 404


def test_options_that_could_read_files_are_refused(admin, sales_db, source_body):
    response = admin.post("/api/data-sources", json=source_body(sales_db, options={"sslrootcert": "/etc/passwd"}))
    assert response.status_code == 422 and "options" in response.get_json()["errors"]
