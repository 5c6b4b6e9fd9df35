"""SQLite data sources live in BIAPP_SQLITE_ROOT only; the catalog and previews work on them."""

import sqlite3

import pytest


@pytest.fixture
def admin(api):
    return api.create_user("admin@example.com", role="admin")


@pytest.fixture
def sales_file(api):
    path = f"{api.settings.sqlite_root}/sales.db"
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("create table orders (region text, amount numeric, order_date date)")
        connection.executemany(
            "insert into orders values (?, ?, ?)",
            [("EMEA", "10.50", "2024-03-01"), ("EMEA", "4.50", "2024-03-02"), ("APAC", "7", "2024-02-01")],
        )
    connection.close()
    return "sales.db"


@pytest.mark.parametrize("path", ["../outside.db", "/etc/passwd", "sub/../../outside.db", "link.db"])
def test_sqlite_sources_outside_the_allowed_directory_are_refused(api, admin, tmp_path, path):
    (tmp_path / "outside.db").write_bytes(b"")
    (tmp_path / "sqlite" / "link.db").symlink_to(tmp_path / "outside.db")
    response = admin.post("/api/data-sources", json={"name": "x", "kind": "sqlite", "path": path})
    assert response.status_code == 422
    assert "path" in response.get_json()["errors"]


def test_a_sqlite_source_inside_the_directory_tests_ok_and_lists_tables(api, admin, sales_file):
    source = admin.post("/api/data-sources", json={"name": "Sales", "kind": "sqlite", "path": sales_file}).get_json()
    assert admin.post(f"/api/data-sources/{source['id']}/test").get_json()["ok"] is True
    tables = admin.get(f"/api/data-sources/{source['id']}/tables").get_json()["items"]
    assert {"name": "orders", "kind": "table"} in tables
    columns = admin.get(f"/api/data-sources/{source['id']}/tables/orders/columns").get_json()["items"]
    assert [(c["name"], c["type"]) for c in columns] == [
        ("region", "string"),
        ("amount", "decimal"),
        ("order_date", "date"),
    ]


def test_a_missing_sqlite_file_fails_the_test_with_a_reason(api, admin):
    source = admin.post("/api/data-sources", json={"name": "Gone", "kind": "sqlite", "path": "gone.db"}).get_json()
    result = admin.post(f"/api/data-sources/{source['id']}/test").get_json()
    assert result["ok"] is False and "does not exist" in result["reason"]


def test_semantic_preview_over_a_sqlite_source(api, admin, sales_file):
    source = admin.post("/api/data-sources", json={"name": "Sales", "kind": "sqlite", "path": sales_file}).get_json()
    entity = admin.post(
        "/api/semantic-entities",
        json={
            "name": "Orders",
            "data_source_id": source["id"],
            "table": "orders",
            "dimensions": [
                {"name": "region", "column": "region", "type": "string"},
                {"name": "day", "column": "order_date", "type": "date"},
            ],
            "measures": [{"name": "revenue", "column": "amount", "aggregation": "sum", "format": "currency"}],
        },
    )
    assert entity.status_code == 201, entity.get_json()
    query = admin.post(
        "/api/saved-queries",
        json={
            "name": "Revenue",
            "entity_id": entity.get_json()["id"],
            "dimensions": ["region"],
            "measures": ["revenue"],
            "filters": [{"field": "day", "op": "gte", "value": "2024-03-01"}],
            "order_by": [{"field": "revenue", "direction": "desc"}],
        },
    )
    assert query.status_code == 201, query.get_json()
    preview = admin.post(f"/api/saved-queries/{query.get_json()['id']}/preview").get_json()
    assert preview["columns"] == [
        {"name": "region", "type": "string", "label": "region", "format": None},
        {"name": "revenue", "type": "decimal", "label": "revenue", "format": "currency"},
    ]
    assert preview["rows"] == [["EMEA", "15"]] and preview["row_count"] == 1 and preview["truncated"] is False


def test_data_sources_are_admin_only(api, admin):
    analyst = api.create_user("analyst@example.com", role="analyst")
    assert analyst.get("/api/data-sources").status_code == 403
    assert analyst.post("/api/data-sources", json={"name": "x", "kind": "sqlite", "path": "x.db"}).status_code == 403
