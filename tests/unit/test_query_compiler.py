"""The semantic compiler: every operator, relative dates and hostile values, run on in-memory SQLite.

Values are always bound parameters: they never appear in the SQL text, and quotes,
semicolons, `%`, `_` and unicode match themselves and nothing else.
"""

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from shared.clock import FixedClock
from shared.errors import QueryRejectedError, ValidationFailedError
from shared.query.compiler import OPERATORS, check_definition, compile_semantic
from shared.query.drivers import bind_values

ZONE = "Pacific/Auckland"
# 1 April 2024, 12:30 in Auckland; still 31 March in UTC.
CLOCK = FixedClock(datetime(2024, 3, 31, 23, 30, tzinfo=UTC))
HOSTILE = ["O'Brien", "x'; DROP TABLE orders; --", "100%", "under_score", "Zürich 東京 🚀", '"quoted"', "back\\slash"]

ENTITY = SimpleNamespace(
    name="Orders",
    table_name="orders",
    dimensions=[
        {"name": "customer", "column": "customer name", "type": "string"},
        {"name": "region", "column": "region", "type": "string"},
        {"name": "qty", "column": "qty", "type": "integer"},
        {"name": "price", "column": "price", "type": "decimal"},
        {"name": "day", "column": "order_date", "type": "date"},
        {"name": "at", "column": "created_at", "type": "datetime"},
        {"name": "paid", "column": "paid", "type": "boolean"},
    ],
    measures=[
        {"name": "revenue", "column": "price", "aggregation": "sum"},
        {"name": "orders", "column": None, "aggregation": "count"},
        {"name": "customers", "column": "customer name", "aggregation": "count_distinct"},
        {"name": "avg_price", "column": "price", "aggregation": "avg"},
        {"name": "first_day", "column": "order_date", "aggregation": "min", "type": "date"},
        {"name": "max_qty", "column": "qty", "aggregation": "max", "type": "integer"},
    ],
)

ROWS = [
    # customer, region, qty, price, order_date, created_at (Auckland wall clock), paid
    ("O'Brien", "EMEA", 1, "10.50", "2024-03-31", "2024-03-31 23:59:00", 1),
    ("x'; DROP TABLE orders; --", "EMEA", 2, "20.00", "2024-04-01", "2024-04-01 00:00:00", 0),
    ("100%", "APAC", 3, "30.25", "2024-03-26", "2024-03-26 08:00:00", 1),
    ("1000", "APAC", 4, "5.00", "2024-03-25", "2024-03-25 23:00:00", 0),
    ("under_score", "LATAM", 5, "7.75", "2024-02-29", "2024-02-29 12:00:00", 1),
    ("underXscore", "LATAM", 6, "1.00", "2024-01-15", "2024-01-15 12:00:00", None),
    ("Zürich 東京 🚀", "EMEA", 7, "2.00", "2023-12-31", "2023-12-31 12:00:00", 1),
    ('"quoted"', None, 8, "3.00", "2024-04-02", "2024-04-02 09:00:00", 0),
    ("back\\slash", "APAC", 9, "4.00", "2024-03-01", "2024-03-01 00:00:00", 1),
]


@pytest.fixture
def db():
    connection = sqlite3.connect(":memory:")
    connection.execute(
        'create table orders ("customer name" text, region text, qty integer, price numeric, order_date date,'
        " created_at text, paid boolean)"
    )
    connection.executemany("insert into orders values (?, ?, ?, ?, ?, ?, ?)", ROWS)
    yield connection
    connection.close()


def run(db, **definition):
    compiled = compile_semantic(ENTITY, definition, zone=ZONE, now=CLOCK.now())
    statement = compiled.statement.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    return db.execute(statement.string, bind_values(statement, "sqlite", ZoneInfo(ZONE))).fetchall()


def customers(db, *filters):
    rows = run(db, dimensions=["customer"], filters=list(filters), order_by=[{"field": "customer"}])
    return {r[0] for r in rows}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_match_only_themselves_with_eq(db, value):
    assert customers(db, {"field": "customer", "op": "eq", "value": value}) == {value}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_never_reach_the_sql_text(value):
    compiled = compile_semantic(
        ENTITY,
        {"dimensions": ["customer"], "filters": [{"field": "customer", "op": "contains", "value": value}]},
        zone=ZONE,
        now=CLOCK.now(),
    )
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        text = compiled.statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string
        assert value not in text


def test_contains_treats_percent_and_underscore_literally(db):
    assert customers(db, {"field": "customer", "op": "contains", "value": "%"}) == {"100%"}
    assert customers(db, {"field": "customer", "op": "contains", "value": "r_s"}) == {"under_score"}
    assert customers(db, {"field": "customer", "op": "contains", "value": "'; DROP"}) == {"x'; DROP TABLE orders; --"}


def test_starts_with_treats_wildcards_literally(db):
    assert customers(db, {"field": "customer", "op": "starts_with", "value": "100%"}) == {"100%"}
    assert customers(db, {"field": "customer", "op": "starts_with", "value": "under_"}) == {"under_score"}
    assert customers(db, {"field": "customer", "op": "starts_with", "value": "Zürich 東"}) == {"Zürich 東京 🚀"}


def test_ne_excludes_the_value(db):
    assert "O'Brien" not in customers(db, {"field": "customer", "op": "ne", "value": "O'Brien"})


def test_comparisons_on_integers_and_decimals(db):
    assert customers(db, {"field": "qty", "op": "gt", "value": 7}) == {'"quoted"', "back\\slash"}
    assert customers(db, {"field": "qty", "op": "gte", "value": 9}) == {"back\\slash"}
    assert customers(db, {"field": "qty", "op": "lt", "value": 2}) == {"O'Brien"}
    assert customers(db, {"field": "qty", "op": "lte", "value": "2"}) == {"O'Brien", "x'; DROP TABLE orders; --"}
    assert customers(db, {"field": "price", "op": "gt", "value": "20.00"}) == {"100%"}
    assert customers(db, {"field": "price", "op": "eq", "value": 10.5}) == {"O'Brien"}


def test_in_and_not_in_with_hostile_lists(db):
    assert customers(db, {"field": "customer", "op": "in", "value": HOSTILE[:3]}) == set(HOSTILE[:3])
    left = customers(db, {"field": "customer", "op": "not_in", "value": HOSTILE})
    assert left == {"1000", "underXscore"}


def test_between_is_inclusive(db):
    assert customers(db, {"field": "qty", "op": "between", "value": [3, 4]}) == {"100%", "1000"}
    assert customers(db, {"field": "day", "op": "between", "value": ["2024-03-25", "2024-03-26"]}) == {"100%", "1000"}


def test_null_checks(db):
    assert customers(db, {"field": "region", "op": "is_null"}) == {'"quoted"'}
    assert len(customers(db, {"field": "paid", "op": "is_not_null"})) == len(ROWS) - 1


def test_boolean_filters(db):
    assert customers(db, {"field": "paid", "op": "eq", "value": True}) == {
        "O'Brien",
        "100%",
        "under_score",
        "Zürich 東京 🚀",
        "back\\slash",
    }


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("today", {"x'; DROP TABLE orders; --"}),
        ("yesterday", {"O'Brien"}),
        ("last_7_days", {"O'Brien", "x'; DROP TABLE orders; --", "100%"}),
        ("this_week", {"x'; DROP TABLE orders; --", '"quoted"'}),
        ("previous_week", {"O'Brien", "100%", "1000"}),
        ("this_month", {"x'; DROP TABLE orders; --", '"quoted"'}),
        ("previous_month", {"O'Brien", "100%", "1000", "back\\slash"}),
        ("this_quarter", {"x'; DROP TABLE orders; --", '"quoted"'}),
        ("previous_quarter", {"O'Brien", "100%", "1000", "back\\slash", "under_score", "underXscore"}),
        ("previous_year", {"Zürich 東京 🚀"}),
        ("year_to_date", set(c for c, *_ in ROWS) - {"Zürich 東京 🚀", '"quoted"'}),
    ],
)
def test_relative_dates_on_a_date_dimension_use_the_reports_zone(db, period, expected):
    assert customers(db, {"field": "day", "op": "eq", "value": period}) == expected


def test_relative_dates_on_a_datetime_dimension_start_at_local_midnight(db):
    assert customers(db, {"field": "at", "op": "eq", "value": "today"}) == {"x'; DROP TABLE orders; --"}
    assert customers(db, {"field": "at", "op": "eq", "value": "yesterday"}) == {"O'Brien"}


def test_relative_dates_with_comparison_operators(db):
    assert customers(db, {"field": "day", "op": "gte", "value": "today"}) == {"x'; DROP TABLE orders; --", '"quoted"'}
    assert customers(db, {"field": "day", "op": "gt", "value": "today"}) == {'"quoted"'}
    assert customers(db, {"field": "day", "op": "lt", "value": "this_year"}) == {"Zürich 東京 🚀"}
    assert customers(db, {"field": "day", "op": "lte", "value": "previous_year"}) == {"Zürich 東京 🚀"}
    not_this_month = customers(db, {"field": "day", "op": "ne", "value": "this_month"})
    assert "x'; DROP TABLE orders; --" not in not_this_month and "O'Brien" in not_this_month
    span = customers(db, {"field": "day", "op": "between", "value": ["previous_week", "yesterday"]})
    assert span == {"O'Brien", "100%", "1000"}


def test_measures_aggregate_per_dimension_and_filter_with_having(db):
    rows = run(
        db,
        dimensions=["region"],
        measures=["revenue", "orders", "customers", "max_qty"],
        filters=[{"field": "region", "op": "is_not_null"}, {"field": "orders", "op": "gte", "value": 2}],
        order_by=[{"field": "revenue", "direction": "desc"}],
    )
    assert [r[0] for r in rows] == ["APAC", "EMEA", "LATAM"]
    assert rows[0][1:] == (pytest.approx(39.25), 3, 3, 9)


def test_limit_and_order(db):
    rows = run(db, dimensions=["customer", "qty"], order_by=[{"field": "qty", "direction": "desc"}], limit=2)
    assert [r[1] for r in rows] == [9, 8]


def test_columns_carry_catalog_types_labels_and_formats():
    entity = SimpleNamespace(**{**ENTITY.__dict__})
    entity.dimensions = [{"name": "day", "column": "order_date", "type": "date", "label": "Day", "format": "iso"}]
    compiled = compile_semantic(
        entity, {"dimensions": ["day"], "measures": ["revenue", "orders"]}, zone=ZONE, now=CLOCK.now()
    )
    assert [(c.name, c.type, c.label) for c in compiled.columns] == [
        ("day", "date", "Day"),
        ("revenue", "decimal", "revenue"),
        ("orders", "integer", "orders"),
    ]


def test_identifiers_are_quoted_from_the_catalog_only():
    compiled = compile_semantic(ENTITY, {"dimensions": ["customer"]}, zone=ZONE, now=CLOCK.now())
    text = str(compiled.statement.compile(dialect=postgresql.dialect()))
    assert '"orders"."customer name"' in text


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"dimensions": ["region; drop table orders"]}, "dimensions.0"),
        ({"dimensions": ["region"], "order_by": [{"field": "price) desc; --"}]}, "order_by.0.field"),
        (
            {"dimensions": ["region"], "order_by": [{"field": "region", "direction": "sideways"}]},
            "order_by.0.direction",
        ),
        (
            {"dimensions": ["region"], "filters": [{"field": "1=1 or region", "op": "eq", "value": "x"}]},
            "filters.0.field",
        ),
        ({"dimensions": ["region"], "filters": [{"field": "region", "op": "like", "value": "x"}]}, "filters.0.op"),
        ({"dimensions": ["region"], "filters": [{"field": "qty", "op": "eq", "value": "1 or 1=1"}]}, "filters.0.value"),
        (
            {"dimensions": ["region"], "filters": [{"field": "day", "op": "eq", "value": "next_decade"}]},
            "filters.0.value",
        ),
        ({"dimensions": ["region"], "filters": [{"field": "qty", "op": "contains", "value": "1"}]}, "filters.0.value"),
        ({"dimensions": ["region"], "filters": [{"field": "region", "op": "in", "value": []}]}, "filters.0.value"),
        ({"dimensions": ["region"], "filters": [{"field": "qty", "op": "between", "value": [1]}]}, "filters.0.value"),
        ({"dimensions": ["region"], "filters": [{"field": "paid", "op": "gt", "value": True}]}, "filters.0.value"),
        ({"dimensions": ["region"], "limit": 0}, "limit"),
        ({"dimensions": [], "measures": []}, "dimensions"),
    ],
)
def test_invalid_definitions_are_refused_field_by_field(definition, field):
    with pytest.raises(ValidationFailedError) as caught:
        check_definition(ENTITY, definition, now=CLOCK.now(), zone=ZONE)
    assert field in caught.value.errors


def test_a_query_the_entity_no_longer_fits_is_rejected_at_run_time():
    with pytest.raises(QueryRejectedError, match="no longer fits"):
        compile_semantic(ENTITY, {"dimensions": ["gone"]}, zone=ZONE, now=CLOCK.now())


def test_every_operator_is_covered_here():
    source = open(__file__, encoding="utf-8").read()
    assert all(f'"op": "{op}"' in source for op in OPERATORS)


def test_decimal_values_stay_exact_in_bound_parameters():
    compiled = compile_semantic(
        ENTITY,
        {"dimensions": ["customer"], "filters": [{"field": "price", "op": "eq", "value": "0.1"}]},
        zone=ZONE,
        now=CLOCK.now(),
    )
    params = compiled.statement.compile(dialect=postgresql.dialect()).params
    assert Decimal("0.1") in params.values()
