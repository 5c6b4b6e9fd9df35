"""What a data source holds: connection test, tables and views, columns with catalog types."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from shared.config import Settings
from shared.errors import (
    DataSourceUnavailableError,
    FieldError,
    NotFoundError,
    ValidationFailedError,
)
from shared.models import DataSource
from shared.query import boundaries, drivers
from shared.query.catalog import referenced_columns
from shared.query.sources import build_url, driver_connect_args, open_sqlite, resolve_sqlite_path
from shared.security.crypto import SecretBox

TEST_TIMEOUT_S = 5


@dataclass(frozen=True)
class TestResult:
    ok: bool
    reason: str | None
    elapsed_ms: int
    warning: str | None = None


def test_connection(source: DataSource, secrets: SecretBox, settings: Settings) -> TestResult:
    """Connect once with a short timeout, run SELECT 1 and vet the login; never raises for connection problems.

    A source that must not be used (the app's own database, a privileged login, a path outside the
    SQLite root) raises DataSourceRefusedError: that is not a connection problem but a refusal.
    """
    started = time.monotonic()
    try:
        if source.kind == "sqlite":
            return _test_sqlite(source, settings, started)
        url = build_url(source, secrets, settings)
        engine = sa.create_engine(
            url,
            poolclass=sa.pool.NullPool,
            connect_args={"connect_timeout": TEST_TIMEOUT_S, **driver_connect_args(source, url)},
        )
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1").scalar()
                warning = boundaries.guard_connection(connection.connection.driver_connection, source.kind)
        finally:
            engine.dispose()
    except sa.exc.DBAPIError as exc:
        reason = drivers.connect_failure_reason(exc)
        return TestResult(False, _without_password(reason, source, secrets), _ms(started))
    except UnicodeError as exc:
        # Raised before any connection: a host name the resolver cannot take ("a..b", IDNA-invalid).
        return TestResult(False, _without_password(_unusable_settings(exc), source, secrets), _ms(started))
    return TestResult(True, None, _ms(started), warning)


def _unusable_settings(exc: UnicodeError) -> str:
    return f"the connection settings cannot be used: {exc}"


def _test_sqlite(source: DataSource, settings: Settings, started: float) -> TestResult:
    path = resolve_sqlite_path(settings, source.path or "")
    try:
        exists = path.is_file()
    except OSError as exc:  # a name longer than the file system takes, a directory that cannot be read
        return TestResult(False, f"the SQLite file cannot be opened ({exc.strerror})", 0)
    if not exists:
        return TestResult(False, "the SQLite file does not exist in the allowed directory", 0)
    try:
        connection = open_sqlite(settings, source.path or "", timeout=TEST_TIMEOUT_S)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return TestResult(False, f"not a readable SQLite database ({exc})", _ms(started))
    return TestResult(True, None, _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _without_password(text: str, source: DataSource, secrets: SecretBox) -> str:
    if source.password_encrypted:
        password = secrets.decrypt(source.password_encrypted, what="data source password")
        if password:
            text = text.replace(password, "***")
    return text


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _inspector(engine: sa.Engine):
    try:
        return sa.inspect(engine)
    except sa.exc.DBAPIError as exc:
        reason = drivers.connect_failure_reason(exc)
        raise DataSourceUnavailableError(f"Cannot read the data source: {reason}") from None
    except UnicodeError as exc:
        raise DataSourceUnavailableError(f"Cannot read the data source: {_unusable_settings(exc)}") from None


def _unreadable(exc: sa.exc.DBAPIError) -> DataSourceUnavailableError:
    """A data source's error, said as one: errors.py would take a bare DBAPIError for the application database's."""
    return DataSourceUnavailableError(f"Cannot read the data source: {drivers.connect_failure_reason(exc)}")


def list_tables(engine: sa.Engine) -> list[dict]:
    """Tables and views of every user schema, as `schema.table` where the source has schemas."""
    try:
        return _list_tables(engine)
    except sa.exc.DBAPIError as exc:
        raise _unreadable(exc) from None


def _list_tables(engine: sa.Engine) -> list[dict]:
    inspector = _inspector(engine)
    default = inspector.default_schema_name
    schemas = [default] if engine.dialect.name != "postgresql" else inspector.get_schema_names()
    found: list[dict] = []
    for schema in schemas:
        if schema in ("information_schema",) or (schema or "").startswith("pg_"):
            continue
        prefix = f"{schema}." if engine.dialect.name == "postgresql" else ""
        for name in inspector.get_table_names(schema=schema):
            found.append({"name": f"{prefix}{name}", "kind": "table"})
        for name in inspector.get_view_names(schema=schema):
            found.append({"name": f"{prefix}{name}", "kind": "view"})
    return sorted(found, key=lambda t: t["name"])


def catalog_type(sql_type: sa.types.TypeEngine) -> str:
    # MySQL's BOOLEAN is TINYINT(1), which SQLAlchemy reflects as an integer.
    if isinstance(sql_type, sa.Boolean) or (isinstance(sql_type, mysql.TINYINT) and sql_type.display_width == 1):
        return "boolean"
    if isinstance(sql_type, sa.Integer):
        return "integer"
    if isinstance(sql_type, sa.Numeric | sa.Float):
        return "decimal"
    if isinstance(sql_type, sa.DateTime):
        return "datetime"
    if isinstance(sql_type, sa.Date):
        return "date"
    return "string"


def list_columns(engine: sa.Engine, table: str) -> list[dict]:
    inspector = _inspector(engine)
    schema, name = _split(table)
    try:
        columns = inspector.get_columns(name, schema=schema)
    except sa.exc.NoSuchTableError:
        raise NotFoundError(f"No table or view {table!r} in this data source.") from None
    except sa.exc.DBAPIError as exc:
        if engine.dialect.name == "sqlite" and "unknown database" in str(exc.orig):
            # "main.t" reads the main file; any other prefix names a database that is not attached.
            raise NotFoundError(f"No table or view {table!r} in this data source.") from None
        if engine.dialect.name != "mysql":
            raise _unreadable(exc) from None
        # Reflecting a MySQL view runs SHOW CREATE, which needs SHOW VIEW; a SELECT-only user can still
        # read information_schema.
        try:
            found = _mysql_columns(engine, schema, name)
        except sa.exc.DBAPIError as again:
            raise _unreadable(again) from None
        if not found:
            raise NotFoundError(f"No table or view {table!r} in this data source.") from None
        return found
    if not columns:
        raise NotFoundError(f"No table or view {table!r} in this data source.")
    return [
        {"name": c["name"], "type": catalog_type(c["type"]), "sql_type": str(c["type"]), "nullable": c["nullable"]}
        for c in columns
    ]


def _mysql_columns(engine: sa.Engine, schema: str | None, name: str) -> list[dict]:
    query = sa.text(
        "SELECT column_name, data_type, column_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name ORDER BY ordinal_position"
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"schema": schema, "name": name}).all()
    found = []
    for column, data_type, column_type, nullable in rows:
        cls = mysql.base.ischema_names.get(data_type.lower())
        if column_type.lower().startswith("tinyint(1)"):
            kind = "boolean"
        elif cls is None:
            kind = "string"
        else:
            kind = next((k for base, k in _CLASS_KINDS if issubclass(cls, base)), "string")
        found.append({"name": column, "type": kind, "sql_type": column_type.upper(), "nullable": nullable == "YES"})
    return found


_CLASS_KINDS = (
    (sa.Boolean, "boolean"),
    (sa.Integer, "integer"),
    (sa.Numeric, "decimal"),
    (sa.Float, "decimal"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
)


def check_entity_columns(engine: sa.Engine, table: str, dimensions: list[dict], measures: list[dict]) -> None:
    """Every column the entity reads must exist in its table (422 naming the ones that do not)."""
    try:
        available = {c["name"] for c in list_columns(engine, table)}
    except NotFoundError as exc:
        raise FieldError("table", exc.message) from None
    errors = {
        path: [f"column {column!r} does not exist in {table}"]
        for path, column in referenced_columns(dimensions, measures).items()
        if column not in available
    }
    if errors:
        raise ValidationFailedError("Some columns do not exist in the source table.", errors=errors)
