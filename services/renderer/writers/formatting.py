"""How values look: Excel number formats from the catalog, and the same formats as text for the PDF."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from shared.query.engine import ColumnInfo

# numFmtId 7 is one of Excel's built-in currency formats (5-8) that Excel shows in
# the reader's own locale currency; the catalog carries no currency code.
EXCEL_FORMATS = {
    "currency": '"$"#,##0.00_);("$"#,##0.00)',
    "percent": "0.00%",
    "integer": "#,##0",
    "decimal": "#,##0.00",
}
EXCEL_DATE = "yyyy-mm-dd"
EXCEL_DATETIME = "yyyy-mm-dd hh:mm:ss"
NUMERIC = (int, float, Decimal)


def excel_number_format(column: ColumnInfo) -> str | None:
    if column.format in EXCEL_FORMATS:
        return EXCEL_FORMATS[column.format]
    if column.type == "decimal":
        return EXCEL_FORMATS["decimal"]
    return None


def local_naive(value: datetime, zone: ZoneInfo) -> datetime:
    """Spreadsheets have no time zones: show aware times in the report's zone."""
    if value.tzinfo is None:
        return value
    return value.astimezone(zone).replace(tzinfo=None)


def format_number(value: int | float | Decimal, fmt: str | None) -> str:
    if fmt == "percent":
        return f"{value * 100:,.2f}%"
    if fmt in ("currency", "decimal"):
        return f"{value:,.2f}"
    if fmt == "integer":
        return f"{round(value):,}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return f"{value:,.6g}" if abs(value) < 1e15 else repr(value)


def display_text(value: object, column: ColumnInfo, zone: ZoneInfo) -> str:
    """A value as people read it (PDF cells, width estimates); NULL is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, NUMERIC):
        return format_number(value, column.format)
    if isinstance(value, datetime):
        return f"{local_naive(value, zone):%Y-%m-%d %H:%M:%S}"
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return str(value)


def is_numeric(value: object) -> bool:
    return isinstance(value, NUMERIC) and not isinstance(value, bool)
