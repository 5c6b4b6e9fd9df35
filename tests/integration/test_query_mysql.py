"""MySQL/MariaDB data sources on a real server, through the same API and query engine as PostgreSQL.

The source logs in as the session's SELECT-only MariaDB user (`mysql_reader`: no FILE, no SUPER)
whose password (quotes, umlaut, CJK) is stored encrypted; root only sets up and checks. The seeded
`orders` table mirrors the PostgreSQL sales fixture.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from shared.errors import QueryRejectedError, QueryTimeoutError
from shared.models import DataSource, SavedQuery
from shared.query.engine import open_stream
from shared.query.sources import SourceEngines
from shared.security.crypto import SecretBox
from tests.conftest import MYSQL_READER_PASSWORD, MySqlReader, build_harness, mysql_admin
from tests.integration.test_catalog_api import create_entity, create_query, entity_body
from tests.integration.test_query_engine import DIMENSIONS, MEASURES, NOW, TOKYO, current_rss_mb
from tests.integration.test_query_sales_db import sales_rows
from tests.support import free_port

PASSWORD = MYSQL_READER_PASSWORD
WRONG_PASSWORD = "wr0ng-Pässword'; --"
MYSQL_DIMENSIONS = [*DIMENSIONS, {"name": "shipped", "column": "shipped_at", "type": "datetime"}]


def shipped(row: tuple) -> datetime:
    """The TIMESTAMP column: an instant, a day after the order was created."""
    return row[6] + timedelta(days=1)


@pytest.fixture(scope="module")
def mysql_db(mysql_url, mysql_reader):
    """Name of a MariaDB database with table `orders` and view `paid_orders`, readable by `mysql_reader`."""
    name = sa.engine.make_url(mysql_url).database
    with mysql_admin(name) as conn, conn.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(
            "CREATE TABLE orders (id int primary key, region varchar(40), customer varchar(100) not null,"
            " quantity int not null, amount decimal(12, 2) not null, order_date date not null,"
            " created_at datetime not null, paid boolean not null, shipped_at timestamp null)"
        )
        cursor.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            # created_at is a DATETIME, a wall-clock value; shipped_at a TIMESTAMP, an instant.
            [(*r[:6], r[6].replace(tzinfo=None), r[7], shipped(r).replace(tzinfo=None)) for r in sales_rows()],
        )
        cursor.execute("CREATE VIEW paid_orders AS SELECT id, amount FROM orders WHERE paid")
    return name


def count_orders(database: str) -> int:
    with mysql_admin(database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders")
        return cursor.fetchone()[0]


def source_body(reader: MySqlReader, **overrides) -> dict:
    body = {
        "name": "Shop (MariaDB)",
        "kind": "mysql",
        "host": reader.host,
        "port": reader.port,
        "database": reader.database,
        "username": reader.username,
        "password": reader.password,
        "options": {"charset": "utf8mb4"},
    }
    body.update(overrides)
    return body


def _dispose_source_engines(harness) -> None:
    engines = harness.app.extensions.get("biapp.source_engines")
    if engines is not None:
        engines.dispose()


@pytest.fixture
def harness(pg_url, tmp_path):
    harness = build_harness(pg_url, tmp_path)
    yield harness
    _dispose_source_engines(harness)


@pytest.fixture
def admin(harness):
    return harness.create_user("admin@example.com", role="admin")


@pytest.fixture
def alice(harness):
    return harness.create_user("alice@example.com", role="analyst")


@pytest.fixture
def source_id(admin, mysql_db, mysql_reader):
    response = admin.post("/api/data-sources", json=source_body(mysql_reader))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def engines(harness):
    engines = SourceEngines(harness.settings, SecretBox(harness.settings.fernet_keys))
    yield engines
    engines.dispose()


def run(harness, engines, query, *, timezone=TOKYO, settings=None, **kwargs):
    """Stream a saved query (an id or an unsaved SavedQuery) through the engine: columns, rows, count, truncated."""
    with harness.session_factory() as session:
        if not isinstance(query, SavedQuery):
            query = session.get(SavedQuery, query)
        with open_stream(
            session,
            query,
            engines=engines,
            settings=settings or harness.settings,
            timezone=timezone,
            now=NOW,
            **kwargs,
        ) as stream:
            rows = list(stream)
            return stream.columns, rows, stream.row_count, stream.truncated


def raw_query(harness, source_id, sql: str) -> SavedQuery:
    """A raw-SQL query that never went through the API's check: the engine must guard on its own."""
    with harness.session_factory() as session:
        owner_id = session.get(DataSource, source_id).owner_id
    return SavedQuery(name="q", kind="sql", data_source_id=source_id, sql=sql, owner_id=owner_id)


# --- data sources ---------------------------------------------------------------------------


def test_a_mysql_source_stores_its_password_encrypted_and_tests_its_connection(harness, admin, mysql_db, mysql_reader):
    created = admin.post("/api/data-sources", json=source_body(mysql_reader))
    assert created.status_code == 201, created.get_json()
    source_id = created.get_json()["id"]
    assert created.get_json()["has_password"] is True and created.get_json()["port"] == mysql_reader.port
    tested = admin.post(f"/api/data-sources/{source_id}/test")
    assert tested.get_json()["ok"] is True, tested.get_json()
    for response in (created, tested, admin.get(f"/api/data-sources/{source_id}"), admin.get("/api/data-sources")):
        assert PASSWORD not in response.get_data(as_text=True)
    with harness.session_factory() as session:
        stored = session.execute(sa.select(DataSource.password_encrypted)).scalar_one()
    assert stored.startswith("gAAAA") and PASSWORD not in stored  # a Fernet token

    wrong = admin.post("/api/data-sources", json=source_body(mysql_reader, name="Wrong", password=WRONG_PASSWORD))
    failed = admin.post(f"/api/data-sources/{wrong.get_json()['id']}/test")
    assert failed.status_code == 200
    assert failed.get_json()["ok"] is False
    assert failed.get_json()["reason"] == "the user name or password was refused"
    assert WRONG_PASSWORD not in failed.get_data(as_text=True) and PASSWORD not in failed.get_data(as_text=True)

    closed = admin.post("/api/data-sources", json=source_body(mysql_reader, name="Closed", port=free_port()))
    result = admin.post(f"/api/data-sources/{closed.get_json()['id']}/test").get_json()
    assert result["ok"] is False and "refused" in result["reason"]


def test_tables_views_and_columns_are_introspected(admin, source_id):
    tables = admin.get(f"/api/data-sources/{source_id}/tables").get_json()["items"]
    assert tables == [{"name": "orders", "kind": "table"}, {"name": "paid_orders", "kind": "view"}]
    columns = admin.get(f"/api/data-sources/{source_id}/tables/orders/columns").get_json()["items"]
    assert {c["name"]: c["type"] for c in columns} == {
        "id": "integer",
        "region": "string",
        "customer": "string",
        "quantity": "integer",
        "amount": "decimal",
        "order_date": "date",
        "created_at": "datetime",
        "paid": "boolean",
        "shipped_at": "datetime",
    }
    view = admin.get(f"/api/data-sources/{source_id}/tables/paid_orders/columns").get_json()["items"]
    assert [c["name"] for c in view] == ["id", "amount"]
    assert admin.get(f"/api/data-sources/{source_id}/tables/nope/columns").status_code == 404


# --- semantic queries -----------------------------------------------------------------------


def test_semantic_queries_aggregate_correctly_and_keep_value_types(harness, engines, alice, source_id):
    missing = entity_body(source_id, table="orders")
    missing["dimensions"].append({"name": "colour", "column": "colour", "type": "string"})
    refused = alice.post("/api/semantic-entities", json=missing)
    assert refused.status_code == 422 and "dimensions.2.column" in refused.get_json()["errors"]

    entity = create_entity(alice, source_id, table="orders", dimensions=MYSQL_DIMENSIONS, measures=MEASURES)
    by_region = create_query(
        alice,
        entity["id"],
        measures=["revenue", "orders", "customers", "avg_amount", "smallest", "units"],
        order_by=[{"field": "region", "direction": "asc"}],
    )
    columns, rows, count, truncated = run(harness, engines, by_region["id"])
    assert [(c.name, c.type) for c in columns] == [
        ("region", "string"),
        ("revenue", "decimal"),
        ("orders", "integer"),
        ("customers", "integer"),
        ("avg_amount", "decimal"),
        ("smallest", "decimal"),
        ("units", "integer"),
    ]
    expected = defaultdict(list)
    for row in sales_rows():
        expected[row[1]].append(row)
    assert (count, truncated) == (4, False) and [r[0] for r in rows] == sorted(expected)
    for region, revenue, orders, customers, avg_amount, smallest, units in rows:
        mine = expected[region]
        assert revenue == sum(r[4] for r in mine) and type(revenue) is Decimal
        assert orders == len(mine) and type(orders) is int
        assert customers == len({r[2] for r in mine})
        assert avg_amount == pytest.approx(sum(r[4] for r in mine) / len(mine)) and type(avg_amount) is Decimal
        assert smallest == min(r[4] for r in mine) and type(smallest) is Decimal
        assert units == sum(r[3] for r in mine) and type(units) is int

    by_paid = create_query(alice, entity["id"], dimensions=["paid"], measures=["revenue"], order_by=[])
    _columns, rows, _count, _truncated = run(harness, engines, by_paid["id"])
    assert {paid: revenue for paid, revenue in rows} == {
        flag: sum(r[4] for r in sales_rows() if r[7] is flag) for flag in (True, False)
    }
    assert all(type(paid) is bool for paid, _revenue in rows)

    # DATETIME is a wall clock, read in the report's zone; TIMESTAMP is an instant, compared and shown in it.
    tokyo = ZoneInfo(TOKYO)
    this_month = create_query(
        alice,
        entity["id"],
        dimensions=["day", "created", "shipped"],
        measures=["orders"],
        filters=[{"field": "shipped", "op": "eq", "value": "this_month"}],
        order_by=[{"field": "shipped", "direction": "asc"}],
    )
    _columns, rows, _count, _truncated = run(harness, engines, this_month["id"])
    wanted = [r for r in sales_rows() if shipped(r).astimezone(tokyo).strftime("%Y-%m") == "2024-03"]
    assert [(day, created, instant, n) for day, created, instant, n in rows] == [
        (r[5], r[6].replace(tzinfo=tokyo), shipped(r), 1) for r in wanted
    ]
    assert all(type(r[0]) is date and r[2].utcoffset() == timedelta(hours=9) for r in rows)

    preview = alice.post(f"/api/saved-queries/{by_region['id']}/preview?timezone={TOKYO}").get_json()
    assert preview["rows"][0] == [
        "APAC",
        str(sum(r[4] for r in expected["APAC"])),
        len(expected["APAC"]),
        len({r[2] for r in expected["APAC"]}),
        preview["rows"][0][4],
        str(min(r[4] for r in expected["APAC"])),
        sum(r[3] for r in expected["APAC"]),
    ]


def test_injection_in_a_filter_value_is_data(harness, engines, alice, source_id, mysql_db):
    entity = create_entity(alice, source_id, table="orders", dimensions=MYSQL_DIMENSIONS, measures=MEASURES)
    names = {r[2] for r in sales_rows()}
    for value in ("O'Brien", "x'; DROP TABLE orders; --", "100%", "under_score", "back\\slash' OR '1'='1"):
        query = create_query(
            alice,
            entity["id"],
            dimensions=["customer"],
            measures=["orders"],
            filters=[{"field": "customer", "op": "contains", "value": value}],
            order_by=[],
        )
        rows = run(harness, engines, query["id"])[1]
        assert {r[0] for r in rows} == {n for n in names if value in n}
    assert count_orders(mysql_db) == 200


# --- raw SQL --------------------------------------------------------------------------------


def test_raw_sql_runs_with_typed_values(harness, engines, alice, source_id):
    query = alice.post(
        "/api/saved-queries",
        json={
            "name": "Raw",
            "data_source_id": source_id,
            "sql": "SELECT id, amount, order_date, created_at, shipped_at, customer, NULL AS nothing"
            " FROM orders WHERE id IN (3, 4) ORDER BY id;",
        },
    )
    assert query.status_code == 201, query.get_json()
    columns, rows, count, truncated = run(harness, engines, query.get_json()["id"])
    assert [(c.name, c.type) for c in columns][:5] == [
        ("id", "integer"),
        ("amount", "decimal"),
        ("order_date", "date"),
        ("created_at", "datetime"),
        ("shipped_at", "datetime"),
    ]
    tokyo = ZoneInfo(TOKYO)
    assert (count, truncated) == (2, False)
    assert rows == [(r[0], r[4], r[5], r[6].replace(tzinfo=tokyo), shipped(r), r[2], None) for r in sales_rows()[2:4]]
    assert type(rows[0][1]) is Decimal and rows[0][4].utcoffset() == timedelta(hours=9)

    preview = alice.post(f"/api/saved-queries/{query.get_json()['id']}/preview?timezone=UTC").get_json()
    assert preview["rows"][0][:3] == [3, "111.25", sales_rows()[2][5].isoformat()]
    assert preview["rows"][0][4] == shipped(sales_rows()[2]).isoformat()


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "UPDATE orders SET amount = 0",
        "SELECT 1; DELETE FROM orders",
        "SELECT count(*) FROM orders; SELECT 1",
        "SELECT * FROM orders INTO OUTFILE '/tmp/orders.csv'",
        "SELECT * FROM orders FOR UPDATE",
    ],
)
def test_raw_sql_other_than_one_select_is_refused(harness, engines, alice, source_id, mysql_db, sql):
    response = alice.post("/api/saved-queries", json={"name": "x", "data_source_id": source_id, "sql": sql})
    assert response.status_code == 422
    assert response.get_json()["errors"]["sql"][0]
    with pytest.raises(QueryRejectedError):
        run(harness, engines, raw_query(harness, source_id, sql))
    assert count_orders(mysql_db) == 200


def test_the_row_cap_sets_truncated_and_the_pool_recovers(harness, engines, alice, source_id):
    query = alice.post(
        "/api/saved-queries",
        json={"name": "All", "data_source_id": source_id, "sql": "SELECT id FROM orders ORDER BY id"},
    ).get_json()
    capped = alice.post(f"/api/saved-queries/{query['id']}/preview?limit=5").get_json()
    assert (capped["row_count"], capped["truncated"], capped["rows"]) == (5, True, [[1], [2], [3], [4], [5]])
    _columns, rows, count, truncated = run(harness, engines, query["id"], max_rows=150)
    assert (count, truncated, rows[-1]) == (150, True, (150,))
    # The cut stream's connection is dropped rather than drained; the next run gets a working one.
    _columns, rows, count, truncated = run(harness, engines, query["id"], max_rows=200)
    assert (count, truncated) == (200, False)
    assert alice.post(f"/api/saved-queries/{query['id']}/preview?limit=500").get_json()["row_count"] == 200


@pytest.mark.timeout(20)  # SLEEP(60) left running would end the test here: the query must be cut
def test_a_slow_query_is_cut_by_the_timeout_with_a_clear_error(pg_url, tmp_path, mysql_db, mysql_reader):
    slow = build_harness(pg_url, tmp_path, BIAPP_QUERY_TIMEOUT_S="1")
    admin = slow.create_user("admin@example.com", role="admin")
    source_id = admin.post("/api/data-sources", json=source_body(mysql_reader)).get_json()["id"]
    query = admin.post(
        "/api/saved-queries", json={"name": "slow", "data_source_id": source_id, "sql": "SELECT SLEEP(60) AS slept"}
    ).get_json()
    engines = SourceEngines(slow.settings, SecretBox(slow.settings.fernet_keys))
    try:
        with pytest.raises(QueryTimeoutError, match="BIAPP_QUERY_TIMEOUT_S"):
            run(slow, engines, query["id"])
        response = admin.post(f"/api/saved-queries/{query['id']}/preview")
        assert response.status_code == 422
        assert response.get_json()["code"] == "query_timeout"
        assert "BIAPP_QUERY_TIMEOUT_S" in response.get_json()["message"]
        # The statement was killed on the server, not left sleeping; the source still answers.
        with mysql_admin() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(60)%'"
                " AND command = 'Query'"
            )
            assert cursor.fetchone()[0] == 0
        fast = raw_query(slow, source_id, "SELECT 1 AS one")
        assert run(slow, engines, fast)[1] == [(1,)]
    finally:
        engines.dispose()
        _dispose_source_engines(slow)


# --- streaming ------------------------------------------------------------------------------

STREAM_SQL = (
    "WITH RECURSIVE digits (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM digits WHERE n < 499)"
    " SELECT a.n * 500 + b.n + 1 AS id, CAST((a.n * 500 + b.n) % 1000 AS DECIMAL(10, 2)) / 4 AS amount,"
    " TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (a.n * 500 + b.n) SECOND AS at,"
    " CONCAT('biapp-stream ', REPEAT('x', 200)) AS label"
    " FROM digits a CROSS JOIN digits b WHERE a.n < 400"
)
STREAM_ROWS = 200_000


def running_streams() -> int:
    with mysql_admin() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.processlist"
            " WHERE info LIKE %s AND command = 'Query' AND id <> CONNECTION_ID()",
            ("%digits a CROSS JOIN digits b%",),
        )
        return cursor.fetchone()[0]


def test_a_large_result_streams_from_a_server_side_cursor_with_bounded_memory(harness, engines, source_id):
    settings = harness.settings
    query = raw_query(harness, source_id, STREAM_SQL)
    gc.collect()
    before = current_rss_mb()
    peak = before
    count = 0
    id_sum = 0
    amount_sum = Decimal(0)
    still_running = None
    with harness.session_factory() as session:
        with open_stream(session, query, engines=engines, settings=settings, timezone="UTC", now=NOW) as stream:
            assert [c.type for c in stream.columns] == ["integer", "decimal", "datetime", "string"]
            for row in stream:
                if count == 0:
                    # 50 MB of rows cannot all sit in socket buffers: the server is still sending.
                    still_running = running_streams()
                count += 1
                id_sum += row[0]
                amount_sum += row[1]
                if count % 20_000 == 0:
                    peak = max(peak, current_rss_mb())
            assert isinstance(row[2], datetime) and row[2].tzinfo is not None
            truncated = stream.truncated
    growth_mb = max(peak, current_rss_mb()) - before
    assert still_running == 1
    assert (count, truncated) == (STREAM_ROWS, False)
    assert id_sum == STREAM_ROWS * (STREAM_ROWS + 1) // 2
    assert amount_sum == sum(Decimal(n % 1000) / 4 for n in range(STREAM_ROWS))
    # Holding 200k such rows takes over 100 MB; a server-side cursor keeps a few batches.
    assert growth_mb < 40, f"RSS grew by {growth_mb:.0f} MB"
    assert running_streams() == 0
