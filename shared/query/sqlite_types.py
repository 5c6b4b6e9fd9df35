"""SQLite data sources keep the types their tables declare.

SQLite stores a DATE as text and a NUMERIC(12,2) as a float (or an integer when whole), and its
driver hands back what is stored. Connections to SQLite data sources are opened with
PARSE_DECLTYPES: sqlite3 then passes every value of a result column that is a plain table column
(`order_date`, `o.amount AS revenue`) through the converter registered for the first word of the
column's declared type. DATE becomes a `date`, DATETIME/TIMESTAMP a `datetime`, NUMERIC/DECIMAL a
`Decimal` made from SQLite's own text of the value (15 significant digits, so 0.1 stays 0.1).
Expressions (`sum(amount)`, `amount * 2`) have no declared type and keep what SQLite computed.

A value that does not parse stays what it was stored as (integer, real or text): a converter that
raised would fail the whole report over one odd row. sqlite3 keeps one converter registry per
process, keyed by type name; only connections opened with PARSE_DECLTYPES consult it, and only
data-source connections are (shared.query.sources.open_sqlite).
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

DETECT_TYPES = sqlite3.PARSE_DECLTYPES


def _stored(raw: bytes) -> object:
    """The value as SQLite stored it: sqlite3 hands converters the bytes of its text form."""
    text = raw.decode("utf-8", "replace")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _date(raw: bytes) -> object:
    text = raw.decode("utf-8", "replace")
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)  # a time of day in a DATE column: keep it
    except ValueError:
        return _stored(raw)


def _datetime(raw: bytes) -> object:
    try:
        return datetime.fromisoformat(raw.decode("utf-8", "replace"))
    except ValueError:
        return _stored(raw)


def _decimal(raw: bytes) -> object:
    try:
        value = Decimal(raw.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        return _stored(raw)
    return value if value.is_finite() else _stored(raw)


CONVERTERS = {"DATE": _date, "DATETIME": _datetime, "TIMESTAMP": _datetime, "NUMERIC": _decimal, "DECIMAL": _decimal}


def register() -> None:
    """Install the converters (idempotent; replaces sqlite3's deprecated defaults for DATE and TIMESTAMP)."""
    for name, converter in CONVERTERS.items():
        sqlite3.register_converter(name, converter)
