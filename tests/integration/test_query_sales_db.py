"""A seeded sales database on the test PostgreSQL server, used as a data source."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN, require

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
def sales_db():
    """Database name of a PostgreSQL database with schema `sales` and table `orders`."""
    name = f"biapp_sales_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        require("PostgreSQL", exc)
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sales")
        conn.execute(
            "CREATE TABLE sales.orders (id integer primary key, region text, customer text not null,"
            " quantity integer not null, amount numeric(12, 2) not null, order_date date not null,"
            " created_at timestamptz not null, paid boolean not null)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO sales.orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", sales_rows())
        # A function that writes: the guard cannot know, the READ ONLY transaction must stop it.
        conn.execute("CREATE TABLE sales.audit (at timestamptz default now())")
        conn.execute(
            "CREATE FUNCTION sales.bump() RETURNS int LANGUAGE sql AS"
            " $$ INSERT INTO sales.audit DEFAULT VALUES RETURNING 1 $$"
        )
    yield name
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sales_dsn(name: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


def count_orders(name: str) -> int:
    with psycopg.connect(sales_dsn(name)) as conn:
        return conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0]


def first_day(rows) -> date:
    return min(r[5] for r in rows)
