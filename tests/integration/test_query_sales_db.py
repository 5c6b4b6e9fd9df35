"""A seeded sales database on the test PostgreSQL server, used as a data source.

It is a database of its own (never the application's), read by the session's `pg_reader` login;
the admin login creates and seeds it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import create_data_database, drop_pg_database, pg_admin_dsn

REGIONS = ("EMEA", "APAC", "LATAM", "North America")
HOSTILE_CUSTOMERS = ("O'Brien", "x'; DROP TABLE sales.orders; --", "100%", "under_score", "Zürich 東京 🚀")


def sales_rows() -> list[tuple]:
    """id, region, customer, quantity, amount, order_date, created_at, paid — deterministic."""
    rows = []
    start = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
    for i in range(1, 201):
        customer = HOSTILE_CUSTOMERS[i % len(HOSTILE_CUSTOMERS)] if i % 3 == 0 else f"Customer {i % 17:02d}"
        created = start + timedelta(hours=13 * i)
        rows.append(
            (
                i,
                REGIONS[i % len(REGIONS)],
                customer,
                i % 7 + 1,
                Decimal(i * 37 % 1000) + Decimal("0.25"),
                created.date(),
                created,
                i % 2 == 0,
            )
        )
    return rows


@pytest.fixture(scope="session")
def sales_db(pg_reader):
    """Database name of a PostgreSQL database with schema `sales` and table `orders`, readable by `pg_reader`."""
    name = create_data_database("biapp_sales", pg_reader.username)
    with psycopg.connect(pg_admin_dsn(name), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sales")
        conn.execute(
            "CREATE TABLE sales.orders (id integer primary key, region text, customer text not null,"
            " quantity integer not null, amount numeric(12, 2) not null, order_date date not null,"
            " created_at timestamptz not null, paid boolean not null)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO sales.orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", sales_rows())
        # A function that writes, behind a view: the guard refuses the function by name but cannot see
        # into the view; the READ ONLY transaction must stop it (the reader may even INSERT otherwise).
        conn.execute("CREATE TABLE sales.audit (at timestamptz default now())")
        conn.execute(
            "CREATE FUNCTION sales.bump() RETURNS int LANGUAGE sql AS"
            " $$ INSERT INTO sales.audit DEFAULT VALUES RETURNING 1 $$"
        )
        conn.execute("CREATE VIEW sales.bumped AS SELECT sales.bump() AS n")
        conn.execute(f'GRANT INSERT ON sales.audit TO "{pg_reader.username}"')
    yield name
    drop_pg_database(name)


def sales_dsn(name: str) -> str:
    return pg_admin_dsn(name)


def count_orders(name: str) -> int:
    with psycopg.connect(sales_dsn(name)) as conn:
        return conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0]


def first_day(rows) -> date:
    return min(r[5] for r in rows)
