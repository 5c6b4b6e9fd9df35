"""The query engine on real PostgreSQL: aggregates, types, injection, the guard, timeouts, memory."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from shared import users
from shared.db import transaction
from shared.errors import DataSourceUnavailableError, QueryRejectedError, QueryTimeoutError
from shared.models import Dashboard, DashboardWidget, DataSource, SavedQuery, SemanticEntity
from shared.query.engine import open_stream
from shared.query.sources import SourceEngines
from shared.security.crypto import SecretBox
from tests.conftest import PG_ADMIN_DSN, PgReader
from tests.integration import test_query_sales_db as query_fixtures
from tests.integration.test_query_sales_db import HOSTILE_CUSTOMERS, count_orders, sales_rows
from tests.support import make_settings

NOW = datetime(2024, 3, 15, 23, 30, tzinfo=UTC)  # 16 March, 08:30 in Tokyo
TOKYO = "Asia/Tokyo"

DIMENSIONS = [
    {"name": "region", "column": "region", "type": "string", "label": "Region"},
    {"name": "customer", "column": "customer", "type": "string"},
    {"name": "day", "column": "order_date", "type": "date"},
    {"name": "created", "column": "created_at", "type": "datetime"},
    {"name": "paid", "column": "paid", "type": "boolean"},
    {"name": "quantity", "column": "quantity", "type": "integer"},
]
MEASURES = [
    {"name": "revenue", "column": "amount", "aggregation": "sum", "label": "Revenue", "format": "currency"},
    {"name": "orders", "column": None, "aggregation": "count"},
    {"name": "customers", "column": "customer", "aggregation": "count_distinct"},
    {"name": "avg_amount", "column": "amount", "aggregation": "avg"},
    {"name": "smallest", "column": "amount", "aggregation": "min"},
    {"name": "units", "column": "quantity", "aggregation": "sum", "type": "integer"},
]


sales_db = query_fixtures.sales_db  # the seeded sales database, as a fixture of this module


def current_rss_mb() -> float:
    """Resident memory now (not the lifetime peak, which earlier tests may have set)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Catalog:
    def __init__(self, factory, settings, sales_db_name, reader: PgReader):
        self.factory = factory
        self.settings = settings
        self.engines = SourceEngines(settings, SecretBox(settings.fernet_keys))
        with transaction(factory) as session:
            owner = users.create_user(session, email="owner@example.com", password="x" * 12, role="analyst")
            source = DataSource(
                name="Sales",
                kind="postgresql",
                host="127.0.0.1",
                port=5432,
                database=sales_db_name,
                username=reader.username,
                password_encrypted=self.engines.secrets.encrypt(reader.password),
                options={},
                owner_id=owner.id,
            )
            session.add(source)
            session.flush()
            entity = SemanticEntity(
                name="Orders",
                data_source_id=source.id,
                table_name="sales.orders",
                dimensions=DIMENSIONS,
                measures=MEASURES,
                owner_id=owner.id,
            )
            session.add(entity)
            session.flush()
            self.owner_id, self.source_id, self.entity_id = owner.id, source.id, entity.id

    def semantic(self, **definition) -> SavedQuery:
        return SavedQuery(
            name="q", kind="semantic", entity_id=self.entity_id, definition=definition, owner_id=self.owner_id
        )

    def sql(self, text: str) -> SavedQuery:
        return SavedQuery(name="q", kind="sql", data_source_id=self.source_id, sql=text, owner_id=self.owner_id)

    def run(self, query, *, timezone=TOKYO, **kwargs):
        with self.factory() as session:
            with open_stream(
                session, query, engines=self.engines, settings=self.settings, timezone=timezone, now=NOW, **kwargs
            ) as stream:
                rows = list(stream)
                return stream.columns, rows, stream.row_count, stream.truncated


@pytest.fixture
def catalog(pg_url, pg_session_factory, sales_db, pg_reader):
    settings = make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_QUERY_TIMEOUT_S="2")
    catalog = Catalog(pg_session_factory, settings, sales_db, pg_reader)
    yield catalog
    catalog.engines.dispose()


def test_semantic_query_returns_the_right_aggregates_per_region(catalog):
    expected = defaultdict(list)
    for row in sales_rows():
        expected[row[1]].append(row)
    columns, rows, count, truncated = catalog.run(
        catalog.semantic(
            dimensions=["region"],
            measures=["revenue", "orders", "customers", "avg_amount", "smallest", "units"],
            order_by=[{"field": "region", "direction": "asc"}],
        )
    )
    assert [(c.name, c.type, c.label, c.format) for c in columns[:2]] == [
        ("region", "string", "Region", None),
        ("revenue", "decimal", "Revenue", "currency"),
    ]
    assert [c.type for c in columns[2:]] == ["integer", "integer", "decimal", "decimal", "integer"]
    assert (count, truncated) == (4, False)
    for region, revenue, orders, customers, avg_amount, smallest, units in rows:
        mine = expected[region]
        assert revenue == sum(r[4] for r in mine) and isinstance(revenue, Decimal)
        assert orders == len(mine) and isinstance(orders, int)
        assert customers == len({r[2] for r in mine})
        assert avg_amount == pytest.approx(sum(r[4] for r in mine) / len(mine))
        assert smallest == min(r[4] for r in mine)
        assert units == sum(r[3] for r in mine) and isinstance(units, int)


def test_relative_dates_are_resolved_in_the_reports_zone(catalog):
    tokyo = ZoneInfo(TOKYO)
    query = catalog.semantic(
        dimensions=["created"], measures=["orders"], filters=[{"field": "created", "op": "eq", "value": "this_month"}]
    )
    _columns, rows, _count, _truncated = catalog.run(query)
    expected = [r for r in sales_rows() if r[6].astimezone(tokyo).strftime("%Y-%m") == "2024-03"]
    assert sorted(r[0] for r in rows) == sorted(r[6] for r in expected)
    # The same rows seen from UTC are February's and March's: the zone matters.
    assert all(r[0].tzinfo is not None and r[0].utcoffset().total_seconds() == 9 * 3600 for r in rows)

    day_query = catalog.semantic(
        dimensions=["day"], measures=["orders"], filters=[{"field": "day", "op": "eq", "value": "last_7_days"}]
    )
    _columns, day_rows, _count, _truncated = catalog.run(day_query)
    assert {r[0] for r in day_rows} <= {date(2024, 3, d) for d in range(10, 17)}
    assert all(isinstance(r[0], date) for r in day_rows)


def test_values_keep_their_python_types(catalog):
    _columns, rows, _count, _truncated = catalog.run(
        catalog.sql(
            "select 1::int as i, 2.50::numeric as d, date '2024-03-01' as day, timestamptz '2024-03-01 12:00Z' as at,"
            " timestamp '2024-03-01 12:00' as wall, true as b, null::text as nothing, gen_random_uuid() as u"
        )
    )
    i, d, day, at, wall, b, nothing, u = rows[0]
    assert (i, d, day, b, nothing) == (1, Decimal("2.50"), date(2024, 3, 1), True, None)
    assert at == datetime(2024, 3, 1, 12, tzinfo=UTC) and at.utcoffset().total_seconds() == 9 * 3600
    assert wall == datetime(2024, 3, 1, 12, tzinfo=ZoneInfo(TOKYO))
    assert isinstance(u, str)


@pytest.mark.parametrize("value", HOSTILE_CUSTOMERS)
@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "contains", "starts_with", "gt"])
def test_injection_in_filter_values_changes_nothing(catalog, sales_db, value, op):
    wrapped = [value] if op in ("in", "not_in") else value
    query = catalog.semantic(
        dimensions=["customer"], measures=["orders"], filters=[{"field": "customer", "op": op, "value": wrapped}]
    )
    _columns, rows, _count, _truncated = catalog.run(query)
    names = {r[2] for r in sales_rows()}
    matches = {
        "eq": {n for n in names if n == value},
        "ne": {n for n in names if n != value},
        "in": {n for n in names if n == value},
        "not_in": {n for n in names if n != value},
        "contains": {n for n in names if value in n},
        "starts_with": {n for n in names if n.startswith(value)},
    }
    if op in matches:
        assert {r[0] for r in rows} == matches[op]
    else:
        # gt and lte split the customers in two: the value was compared as data, not run as SQL.
        rest = catalog.semantic(
            dimensions=["customer"], measures=["orders"], filters=[{"field": "customer", "op": "lte", "value": value}]
        )
        other = {r[0] for r in catalog.run(rest)[1]}
        assert {r[0] for r in rows} | other == names and not {r[0] for r in rows} & other
    assert count_orders(sales_db) == 200


@pytest.mark.parametrize(
    "definition",
    [
        {"dimensions": ["region"], "order_by": [{"field": "region; DROP TABLE sales.orders; --"}]},
        {"dimensions": ["region"], "order_by": [{"field": "region", "direction": "desc; DROP TABLE sales.orders"}]},
        {"dimensions": ['region"; DROP TABLE sales.orders; --']},
        {"dimensions": ["region"], "filters": [{"field": "region = region or 1", "op": "eq", "value": "x"}]},
        {
            "dimensions": ["region"],
            "filters": [{"field": "quantity", "op": "eq", "value": "1; DROP TABLE sales.orders"}],
        },
    ],
)
def test_injection_in_fields_or_order_is_rejected(catalog, sales_db, definition):
    with pytest.raises(QueryRejectedError):
        catalog.run(catalog.semantic(**definition))
    assert count_orders(sales_db) == 200


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM sales.orders",
        "UPDATE sales.orders SET amount = 0",
        "select 1; DROP TABLE sales.orders",
        "select 1; commit; DROP TABLE sales.orders",
        "WITH gone AS (DELETE FROM sales.orders RETURNING *) SELECT count(*) FROM gone",
        "select count(*) from sales.orders; select 1",
        "select set_config('statement_timeout', '0', false)",
    ],
)
def test_raw_sql_that_is_not_one_select_is_refused(catalog, sales_db, sql):
    with pytest.raises(QueryRejectedError):
        catalog.run(catalog.sql(sql))
    assert count_orders(sales_db) == 200


def test_a_select_that_writes_through_a_function_is_stopped_by_the_read_only_transaction(catalog, sales_db):
    with pytest.raises(QueryRejectedError, match=r"sales\.bump\(\) is not allowed"):
        catalog.run(catalog.sql("select sales.bump()"))
    with pytest.raises(QueryRejectedError, match="read-only"):
        catalog.run(catalog.sql("select n from sales.bumped"))
    with psycopg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{sales_db}") as conn:
        assert conn.execute("select count(*) from sales.audit").fetchone()[0] == 0


def test_a_slow_query_is_cut_by_the_timeout_with_a_clear_error(catalog):
    with pytest.raises(QueryTimeoutError, match="BIAPP_QUERY_TIMEOUT_S"):
        catalog.run(catalog.sql("select pg_sleep(60)"))


def test_the_deadline_counts_all_fetches_not_each_one(catalog, sales_db):
    # Every FETCH of 5 rows takes ~0.25 s, far under statement_timeout; only the outside deadline stops it.
    query = catalog.sql("select g, pg_sleep(0.05) from generate_series(1, 400) g")
    with pytest.raises(QueryTimeoutError):
        catalog.run(query, batch_rows=5)
    with psycopg.connect(PG_ADMIN_DSN) as conn:
        running = conn.execute(
            "select count(*) from pg_stat_activity where query like %s and state = 'active'", ("%pg_sleep(0.05)%",)
        ).fetchone()[0]
    assert running == 0


def test_losing_the_connection_is_a_transient_error(catalog, sales_db):
    query = catalog.sql("select g, pg_sleep(0.01) from generate_series(1, 1000) g")

    def kill():
        time.sleep(0.3)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                (sales_db,),
            )

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(DataSourceUnavailableError):
            catalog.run(query, batch_rows=10)
    finally:
        killer.join()
    # The pool recovers: the next run gets a fresh connection.
    assert catalog.run(catalog.sql("select 1"))[1] == [(1,)]


def test_a_dashboard_widget_streams_its_saved_query(catalog):
    with transaction(catalog.factory) as session:
        query = catalog.semantic(dimensions=["region"], measures=["orders"])
        session.add(query)
        session.flush()
        dashboard = Dashboard(name="Sales", owner_id=catalog.owner_id)
        dashboard.widgets.append(DashboardWidget(position=0, title="Orders", saved_query_id=query.id))
        session.add(dashboard)
        session.flush()
        widget = dashboard.widgets[0]
    _columns, rows, count, _truncated = catalog.run(widget)
    assert count == 4 and sum(r[1] for r in rows) == 200


def test_a_million_rows_stream_with_flat_memory_and_stop_at_the_cap(catalog):
    settings = make_settings(
        BIAPP_DATABASE_URL=catalog.settings.database_url, BIAPP_MAX_REPORT_ROWS="1000000", BIAPP_QUERY_TIMEOUT_S="120"
    )
    query = catalog.sql(
        "select g as id, (g * 7 % 1000)::numeric / 4 as amount,"
        " timestamptz '2024-01-01' + g * interval '1 second' as at, 'row ' || g as label"
        " from generate_series(1, 1000001) g"
    )
    gc.collect()
    before = current_rss_mb()
    peak = before
    total = Decimal(0)
    with catalog.factory() as session:
        with open_stream(session, query, engines=catalog.engines, settings=settings, timezone=TOKYO, now=NOW) as stream:
            last = None
            for index, row in enumerate(stream):
                total += row[1]
                last = row
                if index % 50_000 == 0:
                    peak = max(peak, current_rss_mb())
            count, truncated = stream.row_count, stream.truncated
    growth_mb = max(peak, current_rss_mb()) - before
    assert (count, truncated) == (1_000_000, True)
    assert last[0] == 1_000_000 and isinstance(last[2], datetime)
    assert total == sum(Decimal(g * 7 % 1000) / 4 for g in range(1, 1_000_001))
    # Holding a million such rows would take several hundred MB; streaming stays within a few batches.
    assert growth_mb < 64, f"peak RSS grew by {growth_mb:.0f} MB"
    print(f"million-row stream: peak RSS growth {growth_mb:.1f} MB")
