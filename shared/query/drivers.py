"""Driver-level reading for each kind of data source.

A `Reader` owns one checked-out connection for one query: it opens a read-only
transaction, executes through a streaming cursor (psycopg named cursor, PyMySQL
SSCursor, SQLite's lazy cursor), fetches batches, knows how to cancel the running
statement from another thread, and says which columns need value conversion so
rows keep their Python types (Decimal, date, aware datetime, bool, None).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import psycopg
import pymysql
import pymysql.cursors
import sqlalchemy as sa

from shared.query.columns import ColumnInfo

Converter = Callable[[object], object] | None


class Reader(Protocol):
    broken: bool

    def begin(self, timeout_s: int) -> None: ...
    def execute(self, sql: str, params: dict | list | None) -> None: ...
    def fetch(self, size: int) -> list[tuple]: ...
    def columns(self, first: list[tuple]) -> list[ColumnInfo]: ...
    def converters(self, columns: list[ColumnInfo], typed: bool) -> list[Converter]: ...
    def cancel(self) -> None: ...
    def close(self, finished: bool) -> None: ...


# --- value conversion ---------------------------------------------------------------------


def _to_string(v):
    return v if v is None or type(v) is str else str(v)


def _to_integer(v):
    return v if v is None or type(v) is int else int(v)


def _to_decimal(v):
    if v is None or type(v) is Decimal:
        return v
    if isinstance(v, float):
        # 15 significant digits is what a double holds exactly: 0.1 + 0.2 reads 0.3, not 0.30000000000000004.
        return Decimal(format(v, ".15g"))
    return Decimal(int(v)) if isinstance(v, bool) else Decimal(str(v))


def _to_boolean(v):
    return v if v is None or type(v) is bool else bool(v)


def _to_date(v):
    if v is None or type(v) is date:
        return v
    if isinstance(v, datetime):
        return v.date()
    return date.fromisoformat(str(v)[:10])


def _datetime_in(zone: ZoneInfo) -> Callable[[object], object]:
    def convert(v):
        if v is None:
            return None
        if not isinstance(v, datetime):
            v = datetime.fromisoformat(str(v)) if not isinstance(v, date) else datetime(v.year, v.month, v.day)
        # A wall-clock value without an offset is read in the report's zone.
        return v.replace(tzinfo=zone) if v.tzinfo is None else v.astimezone(zone)

    return convert


def _zoned_if_datetime(zone: ZoneInfo) -> Callable[[object], object]:
    def convert(v):
        if type(v) is not datetime:
            return v
        return v.replace(tzinfo=zone) if v.tzinfo is None else v.astimezone(zone)

    return convert


def typed_converter(kind: str, zone: ZoneInfo) -> Converter:
    return {
        "string": _to_string,
        "integer": _to_integer,
        "decimal": _to_decimal,
        "boolean": _to_boolean,
        "date": _to_date,
        "datetime": _datetime_in(zone),
    }[kind]


def row_converter(converters: list[Converter]) -> Callable[[list[tuple]], list[tuple]] | None:
    if not any(converters):
        return None
    steps = [c or (lambda v: v) for c in converters]

    def convert(batch: list[tuple]) -> list[tuple]:
        return [tuple(f(v) for f, v in zip(steps, row, strict=True)) for row in batch]

    return convert


def infer_type(values: list[object]) -> str:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "integer"
        if isinstance(v, float | Decimal):
            return "decimal"
        if isinstance(v, datetime):
            return "datetime"
        if isinstance(v, date):
            return "date"
        return "string"
    return "string"


def bind_values(compiled: sa.sql.compiler.SQLCompiler, kind: str, zone: ZoneInfo) -> dict | list:
    """Parameters of a compiled statement as the source's driver takes them."""
    params = compiled.params
    if kind == "sqlite":
        return [_sqlite_value(params[name], zone) for name in compiled.positiontup]
    if compiled.positional:
        return [_mysql_value(params[name], zone) for name in compiled.positiontup]
    return dict(params)


def _sqlite_value(v, zone: ZoneInfo):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return v.astimezone(zone).replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    return v


def _mysql_value(v, zone: ZoneInfo):
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(zone).replace(tzinfo=None)
    return v


# --- PostgreSQL ---------------------------------------------------------------------------

_PG_TYPES = {
    16: "boolean",
    20: "integer",
    21: "integer",
    23: "integer",
    26: "integer",
    700: "decimal",
    701: "decimal",
    1700: "decimal",
    1082: "date",
    1114: "datetime",
    1184: "datetime",
    25: "string",
    1043: "string",
    1042: "string",
    19: "string",
}


class PostgresReader:
    def __init__(self, engine: sa.Engine, connection: sa.Connection, zone: ZoneInfo):
        self.raw: psycopg.Connection = connection.connection.driver_connection
        self.zone = zone
        self.cursor = None
        self.broken = False

    def begin(self, timeout_s: int) -> None:
        if self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.raw.rollback()
        self.raw.execute("SET TRANSACTION READ ONLY")
        # SET LOCAL ends with the transaction, so pooled connections come back clean.
        self.raw.execute(
            "SELECT set_config('statement_timeout', %s, true), set_config('TimeZone', %s, true)",
            (str(timeout_s * 1000), self.zone.key),
        )

    def execute(self, sql: str, params) -> None:
        self.cursor = self.raw.cursor(name=f"biapp_{uuid.uuid4().hex[:16]}")
        self.cursor.execute(sql, params)

    def fetch(self, size: int) -> list[tuple]:
        return self.cursor.fetchmany(size)

    def columns(self, first: list[tuple]) -> list[ColumnInfo]:
        return [ColumnInfo(d.name, _PG_TYPES.get(d.type_code, "string"), d.name) for d in self.cursor.description]

    def converters(self, columns: list[ColumnInfo], typed: bool) -> list[Converter]:
        if typed:
            return [typed_converter(c.type, self.zone) for c in columns]
        result: list[Converter] = []
        for d in self.cursor.description:
            if d.type_code == 1114:
                result.append(_datetime_in(self.zone))
            elif d.type_code not in _PG_TYPES:
                result.append(_to_string)  # uuid, json, arrays, intervals…: text for the writers
            else:
                result.append(None)
        return result

    def cancel(self) -> None:
        self.raw.cancel_safe(timeout=5)

    def close(self, finished: bool) -> None:
        try:
            if self.cursor is not None and not self.raw.closed:
                self.cursor.close()
        except psycopg.Error:
            pass
        self.broken = self.raw.closed or self.raw.broken


# --- MySQL / MariaDB ----------------------------------------------------------------------

_MYSQL_TYPES = {0: "decimal", 246: "decimal", 4: "decimal", 5: "decimal", 10: "date", 12: "datetime", 7: "datetime"}
_MYSQL_TYPES.update({code: "integer" for code in (1, 2, 3, 8, 9, 13)})


class MySqlReader:
    def __init__(self, engine: sa.Engine, connection: sa.Connection, zone: ZoneInfo):
        self.engine = engine
        self.raw: pymysql.Connection = connection.connection.driver_connection
        self.zone = zone
        self.cursor = None
        self.broken = False

    def begin(self, timeout_s: int) -> None:
        with self.raw.cursor() as cursor:
            # TIMESTAMP values (and NOW()) follow the session zone: make it the report's, as on PostgreSQL.
            # A server without zone tables only knows offsets; the zone's current one is the fallback.
            try:
                cursor.execute("SET time_zone = %s", (self.zone.key,))
            except pymysql.err.DatabaseError as exc:
                if _mysql_code(exc) != _MYSQL_UNKNOWN_ZONE:
                    raise
                offset = datetime.now(self.zone).strftime("%z")
                cursor.execute("SET time_zone = %s", (f"{offset[:3]}:{offset[3:]}",))
            cursor.execute("START TRANSACTION READ ONLY")

    def execute(self, sql: str, params) -> None:
        self.cursor = self.raw.cursor(pymysql.cursors.SSCursor)
        self.cursor.execute(sql, tuple(params) if isinstance(params, list) else params)

    def fetch(self, size: int) -> list[tuple]:
        return list(self.cursor.fetchmany(size))

    def columns(self, first: list[tuple]) -> list[ColumnInfo]:
        return [ColumnInfo(d[0], _MYSQL_TYPES.get(d[1], "string"), d[0]) for d in self.cursor.description]

    def converters(self, columns: list[ColumnInfo], typed: bool) -> list[Converter]:
        if typed:
            return [typed_converter(c.type, self.zone) for c in columns]
        return [_datetime_in(self.zone) if c.type == "datetime" else None for c in columns]

    def cancel(self) -> None:
        with self.engine.connect() as other:
            other.exec_driver_sql(f"KILL QUERY {int(self.raw.thread_id())}")

    def close(self, finished: bool) -> None:
        if not finished:
            # An unfinished SSCursor drains every remaining row on close (or at garbage collection):
            # detach the pending result and drop the connection instead.
            self.broken = True
            result = getattr(self.cursor, "_result", None)
            if result is not None:
                result.unbuffered_active = False
            self.raw._result = None
            self.raw._force_close()
            return
        try:
            if self.cursor is not None:
                self.cursor.close()
        except pymysql.Error:
            self.broken = True


# --- SQLite -------------------------------------------------------------------------------


class SqliteReader:
    def __init__(self, engine: sa.Engine, connection: sa.Connection, zone: ZoneInfo):
        self.raw: sqlite3.Connection = connection.connection.driver_connection
        self.zone = zone
        self.cursor = None
        self.broken = False

    def begin(self, timeout_s: int) -> None:
        # The file is opened read-only already (mode=ro); query_only is a second lock.
        self.raw.execute("PRAGMA query_only = ON")

    def execute(self, sql: str, params) -> None:
        self.cursor = self.raw.cursor()
        self.cursor.execute(sql, params or ())

    def fetch(self, size: int) -> list[tuple]:
        return self.cursor.fetchmany(size)

    def columns(self, first: list[tuple]) -> list[ColumnInfo]:
        names = [d[0] for d in self.cursor.description or []]
        return [ColumnInfo(n, infer_type([row[i] for row in first]), n) for i, n in enumerate(names)]

    def converters(self, columns: list[ColumnInfo], typed: bool) -> list[Converter]:
        if typed:
            return [typed_converter(c.type, self.zone) for c in columns]
        # Declared DATETIME columns arrive as datetimes (sources.open_sqlite): wall-clock values are read
        # in the report's zone, as on PostgreSQL and MySQL. Anything else in such a column passes as is.
        return [_zoned_if_datetime(self.zone) if c.type == "datetime" else None for c in columns]

    def cancel(self) -> None:
        self.raw.interrupt()

    def close(self, finished: bool) -> None:
        if self.cursor is not None:
            self.cursor.close()


READERS = {"postgresql": PostgresReader, "mysql": MySqlReader, "sqlite": SqliteReader}


def reader_for(kind: str, engine: sa.Engine, connection: sa.Connection, zone: ZoneInfo) -> Reader:
    return READERS[kind](engine, connection, zone)


# --- errors -------------------------------------------------------------------------------

_MYSQL_TIMEOUTS = {1317, 3024, 1969}
_MYSQL_UNKNOWN_ZONE = 1298
_MYSQL_CONNECTION_LOST = {2003, 2006, 2013, 2055}


def _unwrap(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def _mysql_code(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.Error) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_timeout(exc: BaseException) -> bool:
    exc = _unwrap(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return True
    if _mysql_code(exc) in _MYSQL_TIMEOUTS:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc)


def is_connection_loss(exc: BaseException) -> bool:
    exc = _unwrap(exc)
    if isinstance(exc, psycopg.OperationalError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return _mysql_code(exc) in _MYSQL_CONNECTION_LOST


def is_database_error(exc: BaseException) -> bool:
    return isinstance(_unwrap(exc), psycopg.Error | pymysql.err.Error | sqlite3.Error | sa.exc.DBAPIError)


def error_text(exc: BaseException) -> str:
    exc = _unwrap(exc)
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    if _mysql_code(exc) is not None and len(exc.args) > 1:
        return str(exc.args[1])
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_auth_failure(exc: BaseException) -> bool:
    exc = _unwrap(exc)
    if _mysql_code(exc) in (1044, 1045, 1698):
        return True
    return "authentication failed" in str(exc).lower()


def connect_failure_reason(exc: BaseException) -> str:
    exc = _unwrap(exc)
    text = error_text(exc)
    lowered = str(exc).lower()
    if "timeout expired" in lowered or "timed out" in lowered:
        return "the server did not answer in time (check host, port and firewall)"
    if "connection refused" in lowered or _mysql_code(exc) == 2003:
        return "the server refused the connection (check host and port)"
    if "does not exist" in lowered and "database" in lowered or _mysql_code(exc) == 1049:
        return "the database does not exist"
    if is_auth_failure(exc):
        return "the user name or password was refused"
    return text
