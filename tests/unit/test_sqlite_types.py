"""Raw SQL on a SQLite file keeps the types its tables declare: dates, times and exact numbers."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from services.renderer.writers import RenderMeta, Section
from services.renderer.writers.xlsx_writer import XlsxWriter
from shared import users
from shared.db import make_engine, make_session_factory, transaction
from shared.models import DataSource, SavedQuery
from shared.query.engine import open_stream
from shared.query.sources import SourceEngines
from shared.security.crypto import SecretBox
from tests.support import make_settings

BERLIN = "Europe/Berlin"


@pytest.fixture
def world(sqlite_url, tmp_path):
    root = tmp_path / "sqlite"
    root.mkdir()
    with sqlite3.connect(root / "orders.db") as conn:
        conn.execute(
            "create table orders (order_date DATE, placed_at DATETIME, amount NUMERIC(12, 2), price DECIMAL(10,2))"
        )
        conn.executemany(
            "insert into orders values (?, ?, ?, ?)",
            [
                ("2024-01-05", "2024-01-05 10:30:00", 12.5, 0.1),
                ("2024-01-05", "2024-01-05T11:00:00+00:00", 7, 0.2),
                ("2024-01-06", "not a time", "n/a", 3),  # what does not parse stays as stored
            ],
        )
    settings = make_settings(BIAPP_DATABASE_URL=sqlite_url, BIAPP_SQLITE_ROOT=str(root))
    factory = make_session_factory(make_engine(sqlite_url))
    with transaction(factory) as session:
        owner = users.create_user(session, email="ana@example.com", password="correct horse battery", role="analyst")
        source = DataSource(name="Orders", kind="sqlite", path="orders.db", options={}, owner_id=owner.id)
        session.add(source)
        session.flush()
        source_id, owner_id = source.id, owner.id
    engines = SourceEngines(settings, SecretBox(settings.fernet_keys))
    yield settings, factory, engines, source_id, owner_id
    engines.dispose()


def run(world, sql: str):
    settings, factory, engines, source_id, owner_id = world
    query = SavedQuery(name="q", kind="sql", data_source_id=source_id, sql=sql, owner_id=owner_id)
    with factory() as session, open_stream(session, query, engines=engines, settings=settings, timezone=BERLIN) as s:
        return list(s.columns), list(s)


def test_a_grouped_query_keeps_its_date_column_a_date(world):
    columns, rows = run(world, "SELECT order_date, sum(price) AS revenue FROM orders GROUP BY 1 ORDER BY 1")
    assert [(c.name, c.type) for c in columns] == [("order_date", "date"), ("revenue", "decimal")]
    assert [row[0] for row in rows] == [date(2024, 1, 5), date(2024, 1, 6)]
    assert rows[0][1] == pytest.approx(0.3)  # an expression has no declared type: SQLite's own sum


def test_declared_datetime_and_numeric_columns_arrive_typed_and_odd_values_as_stored(world):
    columns, rows = run(world, "SELECT order_date, placed_at, amount, o.price AS unit FROM orders AS o ORDER BY rowid")
    assert [c.type for c in columns] == ["date", "datetime", "decimal", "decimal"]
    zone = ZoneInfo(BERLIN)
    assert rows[0] == (date(2024, 1, 5), datetime(2024, 1, 5, 10, 30, tzinfo=zone), Decimal("12.5"), Decimal("0.1"))
    assert rows[1][1] == datetime(2024, 1, 5, 12, 0, tzinfo=zone)  # an offset is kept, shown in the report's zone
    assert rows[1][2:] == (Decimal("7"), Decimal("0.2"))
    assert rows[2][1:3] == ("not a time", "n/a")


def test_the_spreadsheet_gets_real_date_and_number_cells(world, tmp_path):
    columns, rows = run(world, "SELECT order_date, amount FROM orders WHERE amount <> 'n/a' ORDER BY rowid")
    writer = XlsxWriter(tmp_path, timezone=BERLIN)
    writer.begin_section(Section("Orders", columns))
    for row in rows:
        writer.write_row(row)
    writer.end_section(len(rows), False)
    rendered = writer.finish(RenderMeta("Orders", "2024-01-07 09:00 CET", BERLIN), "orders")
    sheet = openpyxl.load_workbook(rendered.path)["Orders"]
    day, amount = sheet["A2"], sheet["B2"]
    assert day.is_date and day.value.date() == date(2024, 1, 5)
    assert amount.data_type == "n" and amount.value == 12.5
