"""Semantic entities, saved queries and dashboards over HTTP against a real PostgreSQL source."""

from __future__ import annotations

import pytest

from tests.conftest import build_harness
from tests.integration import test_query_sales_db as query_fixtures
from tests.integration.test_query_sales_db import count_orders

sales_db = query_fixtures.sales_db


@pytest.fixture
def harness(pg_url, tmp_path):
    return build_harness(pg_url, tmp_path)


@pytest.fixture
def people(harness):
    return {
        "admin": harness.create_user("admin@example.com", role="admin"),
        "alice": harness.create_user("alice@example.com", role="analyst"),
        "bob": harness.create_user("bob@example.com", role="analyst"),
        "vera": harness.create_user("vera@example.com", role="viewer"),
    }


@pytest.fixture
def source_id(people, sales_db, pg_reader):
    """A data source on the sales database, logged in as the session's read-only role."""
    body = {
        "name": "Sales",
        "kind": "postgresql",
        "host": "127.0.0.1",
        "port": 5432,
        "database": sales_db,
        "username": pg_reader.username,
        "password": pg_reader.password,
    }
    response = people["admin"].post("/api/data-sources", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def entity_body(source_id: str, **overrides) -> dict:
    body = {
        "name": "Orders",
        "data_source_id": source_id,
        "table": "sales.orders",
        "dimensions": [
            {"name": "region", "column": "region", "type": "string", "label": "Region"},
            {"name": "day", "column": "order_date", "type": "date"},
        ],
        "measures": [
            {"name": "revenue", "column": "amount", "aggregation": "sum", "label": "Revenue", "format": "currency"},
            {"name": "orders", "aggregation": "count"},
        ],
        "shared": False,
    }
    body.update(overrides)
    return body


def create_entity(client, source_id, **overrides) -> dict:
    response = client.post("/api/semantic-entities", json=entity_body(source_id, **overrides))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create_query(client, entity_id, **overrides) -> dict:
    body = {
        "name": "Revenue by region",
        "entity_id": entity_id,
        "dimensions": ["region"],
        "measures": ["revenue"],
        "order_by": [{"field": "revenue", "direction": "desc"}],
    }
    body.update(overrides)
    response = client.post("/api/saved-queries", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_an_entity_with_missing_columns_is_refused(people, source_id):
    body = entity_body(source_id)
    body["dimensions"].append({"name": "colour", "column": "colour", "type": "string"})
    response = people["alice"].post("/api/semantic-entities", json=body)
    assert response.status_code == 422
    assert "dimensions.2.column" in response.get_json()["errors"]
    missing_table = people["alice"].post("/api/semantic-entities", json=entity_body(source_id, table="sales.nope"))
    assert missing_table.status_code == 422 and "table" in missing_table.get_json()["errors"]


def test_private_objects_are_404_to_others_and_shared_ones_read_only(people, source_id):
    alice, bob = people["alice"], people["bob"]
    private = create_entity(alice, source_id)
    shared = create_entity(alice, source_id, name="Shared orders", shared=True)
    assert bob.get(f"/api/semantic-entities/{private['id']}").status_code == 404
    assert bob.get(f"/api/semantic-entities/{shared['id']}").status_code == 200
    assert bob.put(f"/api/semantic-entities/{shared['id']}", json=entity_body(source_id)).status_code == 403
    assert {e["id"] for e in bob.get("/api/semantic-entities").get_json()["items"]} == {shared["id"]}

    query = create_query(alice, private["id"])
    assert bob.get(f"/api/saved-queries/{query['id']}").status_code == 404
    assert bob.post(f"/api/saved-queries/{query['id']}/preview").status_code == 404
    # Bob may not build on Alice's private entity either.
    refused = bob.post("/api/saved-queries", json={"name": "x", "entity_id": private["id"], "dimensions": ["region"]})
    assert refused.status_code == 422 and "entity_id" in refused.get_json()["errors"]

    dashboard = alice.post("/api/dashboards", json={"name": "Board", "widgets": []}).get_json()
    assert bob.get(f"/api/dashboards/{dashboard['id']}").status_code == 404


def test_semantic_preview_returns_typed_columns_and_capped_rows(people, source_id):
    entity = create_entity(people["alice"], source_id)
    query = create_query(people["alice"], entity["id"])
    assert query["kind"] == "semantic" and query["dimensions"] == ["region"]
    preview = people["alice"].post(f"/api/saved-queries/{query['id']}/preview?limit=2&timezone=Europe/Berlin")
    body = preview.get_json()
    assert preview.status_code == 200, body
    assert [c["name"] for c in body["columns"]] == ["region", "revenue"]
    assert [c["type"] for c in body["columns"]] == ["string", "decimal"]
    assert body["row_count"] == 2 and body["truncated"] is True and len(body["rows"]) == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"order_by": [{"field": "revenue; DROP TABLE sales.orders; --", "direction": "desc"}]},
        {"dimensions": ['region"; DROP TABLE sales.orders; --']},
        {"filters": [{"field": "region) or (1=1", "op": "eq", "value": "x"}]},
        {"filters": [{"field": "region", "op": "eq; DROP TABLE sales.orders", "value": "x"}]},
    ],
)
def test_injection_in_fields_answers_422_and_changes_nothing(people, source_id, sales_db, overrides):
    entity = create_entity(people["alice"], source_id)
    body = {"name": "x", "entity_id": entity["id"], "dimensions": ["region"], "measures": ["revenue"], **overrides}
    response = people["alice"].post("/api/saved-queries", json=body)
    assert response.status_code == 422
    assert count_orders(sales_db) == 200


def test_injection_in_values_returns_the_right_rows(people, source_id, sales_db):
    entity = create_entity(people["alice"], source_id)
    query = create_query(
        people["alice"], entity["id"], filters=[{"field": "region", "op": "eq", "value": "EMEA' OR '1'='1"}]
    )
    body = people["alice"].post(f"/api/saved-queries/{query['id']}/preview").get_json()
    assert body["rows"] == [] and count_orders(sales_db) == 200


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM sales.orders",
        "UPDATE sales.orders SET amount = 0",
        "select 1; DROP TABLE sales.orders",
        "WITH gone AS (DELETE FROM sales.orders RETURNING *) SELECT * FROM gone",
        "select 1; select 2",
    ],
)
def test_raw_sql_other_than_one_select_is_refused_with_a_reason(people, source_id, sales_db, sql):
    response = people["alice"].post("/api/saved-queries", json={"name": "x", "data_source_id": source_id, "sql": sql})
    assert response.status_code == 422
    assert response.get_json()["errors"]["sql"][0]
    assert count_orders(sales_db) == 200


def test_raw_sql_is_for_analysts_and_admins_only(people, source_id):
    body = {"name": "x", "data_source_id": source_id, "sql": "select 1"}
    assert people["vera"].post("/api/saved-queries", json=body).status_code == 403
    created = people["alice"].post("/api/saved-queries", json={**body, "shared": True})
    assert created.status_code == 201
    preview = people["alice"].post(f"/api/saved-queries/{created.get_json()['id']}/preview").get_json()
    assert preview["rows"] == [[1]] and preview["columns"][0]["type"] == "integer"


def test_a_slow_raw_query_previews_as_a_clear_timeout(harness, people, source_id, pg_url, tmp_path):
    slow = build_harness(pg_url, tmp_path, BIAPP_QUERY_TIMEOUT_S="1")
    client = slow.client().login("alice@example.com", "correct horse battery")
    query = client.post(
        "/api/saved-queries", json={"name": "slow", "data_source_id": source_id, "sql": "select pg_sleep(30)"}
    ).get_json()
    response = client.post(f"/api/saved-queries/{query['id']}/preview")
    assert response.status_code == 422
    assert response.get_json()["code"] == "query_timeout"


def test_a_widget_names_its_chart_fields_and_they_must_be_columns_of_its_query(people, source_id):
    alice = people["alice"]
    query = create_query(alice, create_entity(alice, source_id, shared=True)["id"])
    widget = {"title": "By region", "saved_query_id": query["id"], "chart": "bar", "x": "region"}
    good = alice.post("/api/dashboards", json={"name": "S", "widgets": [{**widget, "measures": ["revenue"]}]})
    assert good.status_code == 201, good.get_json()
    [saved] = good.get_json()["widgets"]
    assert (saved["x"], saved["series"], saved["measures"]) == ("region", None, ["revenue"])

    for changes, field in (
        ({"x": "ordered_on"}, "widgets.0.x"),
        ({"series": "region"}, "widgets.0.series"),
        ({"measures": ["profit"]}, "widgets.0.measures"),
        ({"chart": "pie", "measures": ["revenue", "revenue"]}, "widgets.0.measures"),
        ({"chart": "kpi", "series": "region", "x": None}, "widgets.0.series"),
    ):
        bad = alice.post("/api/dashboards", json={"name": "S", "widgets": [{**widget, **changes}]})
        assert bad.status_code == 422 and field in bad.get_json()["errors"], (changes, bad.get_json())


def test_dashboards_keep_widget_order_and_check_their_queries(people, source_id):
    alice = people["alice"]
    entity = create_entity(alice, source_id, shared=True)
    first = create_query(alice, entity["id"], name="First")
    second = create_query(alice, entity["id"], name="Second")
    widgets = [
        {"title": "B", "saved_query_id": second["id"], "chart": "bar"},
        {"title": "A", "saved_query_id": first["id"], "chart": "pie"},
    ]
    created = alice.post("/api/dashboards", json={"name": "Sales", "widgets": widgets, "shared": True})
    assert created.status_code == 201, created.get_json()
    board = created.get_json()
    assert [(w["title"], w["chart"], w["position"]) for w in board["widgets"]] == [("B", "bar", 0), ("A", "pie", 1)]

    updated = alice.put(
        f"/api/dashboards/{board['id']}", json={"name": "Sales", "widgets": widgets[1:], "shared": True}
    )
    assert [w["title"] for w in updated.get_json()["widgets"]] == ["A"]

    bad = alice.post("/api/dashboards", json={"name": "x", "widgets": [{**widgets[0], "chart": "sunburst"}]})
    assert bad.status_code == 422
    # Bob sees the shared dashboard but cannot use Alice's private queries in his own.
    bob = people["bob"]
    assert bob.get(f"/api/dashboards/{board['id']}").status_code == 200
    assert bob.delete(f"/api/dashboards/{board['id']}").status_code == 403
    mine = bob.post("/api/dashboards", json={"name": "Mine", "widgets": [widgets[0]]})
    assert mine.status_code == 422 and "widgets.0.saved_query_id" in mine.get_json()["errors"]
