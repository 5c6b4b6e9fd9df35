"""The one entry point the renderer and alerts use to read data.

`open_stream()` yields a `QueryStream`: column metadata first, then rows pulled in
batches from a server-side cursor, never the whole result in memory. Iteration
stops at `max_rows`; `truncated` then says the result was cut.

Semantic queries are compiled with SQLAlchemy Core for the source's dialect, raw
SQL passes the guard in `sqlguard`; both then run on the driver connection taken
from the source's pool, inside a READ ONLY transaction, with a wall-clock budget
enforced from outside (see `Deadline`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import (
    DataSourceUnavailableError,
    NotFoundError,
    PermanentError,
    QueryRejectedError,
    QueryTimeoutError,
)
from shared.models import DashboardWidget, DataSource, SavedQuery, SemanticEntity
from shared.query import drivers
from shared.query.columns import ColumnInfo
from shared.query.compiler import compile_semantic
from shared.query.deadline import Deadline
from shared.query.sources import SourceEngines
from shared.query.sqlguard import check_select

__all__ = ["BATCH_ROWS", "ColumnInfo", "QueryStream", "open_stream"]

log = logging.getLogger(__name__)

BATCH_ROWS = 2000


class QueryStream:
    """Columns now, rows on iteration; `row_count` and `truncated` are final once iteration ends."""

    def __init__(self, columns: list[ColumnInfo], batches: Iterator[list[tuple]], max_rows: int):
        self.columns = columns
        self._batches = batches
        self._max_rows = max_rows
        self.truncated = False
        self.row_count = 0

    def __iter__(self) -> Iterator[tuple]:
        for batch in self._batches:
            room = self._max_rows - self.row_count
            if room <= 0:
                self.truncated = True
                return
            if len(batch) > room:
                yield from batch[:room]
                self.row_count += room
                self.truncated = True
                return
            yield from batch
            self.row_count += len(batch)


@dataclass(frozen=True)
class Plan:
    """What to run where: statement text, driver parameters and (for semantic queries) known columns."""

    source: DataSource
    sql: str
    params: dict | list | None
    columns: list[ColumnInfo] | None


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise QueryRejectedError(f"Unknown time zone {timezone!r}.") from None


def _resolve_query(session: Session, query: SavedQuery | DashboardWidget) -> SavedQuery:
    if isinstance(query, DashboardWidget):
        saved = session.get(SavedQuery, query.saved_query_id)
        if saved is None:
            raise NotFoundError(f"The saved query of widget {query.title!r} no longer exists.")
        return saved
    return query


def _source(session: Session, source_id) -> DataSource:
    source = session.get(DataSource, source_id) if source_id else None
    if source is None:
        raise NotFoundError("The saved query's data source no longer exists.")
    return source


def plan_query(
    session: Session, query: SavedQuery, *, engines: SourceEngines, zone: str, now: datetime
) -> tuple[Plan, sa.Engine]:
    if query.kind == "sql":
        source = _source(session, query.data_source_id)
        return Plan(source, check_select(query.sql or "", source.kind), None, None), engines.get(source)
    entity = session.get(SemanticEntity, query.entity_id) if query.entity_id else None
    if entity is None:
        raise NotFoundError("The saved query's semantic entity no longer exists.")
    source = _source(session, entity.data_source_id)
    engine = engines.get(source)
    compiled = compile_semantic(entity, query.definition or {}, zone=zone, now=now)
    statement = compiled.statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = drivers.bind_values(statement, source.kind, ZoneInfo(zone))
    return Plan(source, statement.string, params, compiled.columns), engine


def _connect(engine: sa.Engine, source: DataSource) -> sa.Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        reason = drivers.connect_failure_reason(exc.orig or exc)
        if drivers.is_auth_failure(exc.orig or exc):
            raise PermanentError(f"Data source {source.name!r} refused the login: {reason}") from None
        raise DataSourceUnavailableError(f"Cannot connect to data source {source.name!r}: {reason}") from None


@contextmanager
def open_stream(
    session: Session,
    query: SavedQuery | DashboardWidget,
    *,
    engines: SourceEngines,
    settings: Settings,
    timezone: str = "UTC",
    now: datetime | None = None,
    max_rows: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[QueryStream]:
    """Run a saved query (or a dashboard widget's) and stream its rows; see the module docstring."""
    prepared = prepare(session, query, engines=engines, timezone=timezone, now=now)
    with stream_prepared(prepared, settings=settings, max_rows=max_rows, batch_rows=batch_rows) as stream:
        yield stream


@dataclass(frozen=True)
class Prepared:
    """Everything needed to run a query, read from the application database beforehand."""

    plan: Plan
    engine: sa.Engine
    zone: ZoneInfo


def prepare(
    session: Session,
    query: SavedQuery | DashboardWidget,
    *,
    engines: SourceEngines,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> Prepared:
    """Plan the query with the application database; after this the session may be closed."""
    zone = _zone(timezone)
    now = now or datetime.now(UTC)
    plan, engine = plan_query(session, _resolve_query(session, query), engines=engines, zone=timezone, now=now)
    return Prepared(plan, engine, zone)


@contextmanager
def stream_prepared(
    prepared: Prepared,
    *,
    settings: Settings,
    max_rows: int | None = None,
    batch_rows: int = BATCH_ROWS,
    timeout: tuple[int, str] | None = None,
) -> Iterator[QueryStream]:
    """Stream a prepared query's rows under a wall-clock budget: `timeout` is (seconds, the setting that says so),
    BIAPP_QUERY_TIMEOUT_S unless given."""
    limit = max_rows or settings.max_report_rows
    budget, budget_name = timeout or (settings.query_timeout_s, "BIAPP_QUERY_TIMEOUT_S")
    plan, engine = prepared.plan, prepared.engine
    connection = _connect(engine, plan.source)
    reader = drivers.reader_for(plan.source.kind, engine, connection, prepared.zone)
    deadline = Deadline(budget, reader.cancel)
    finished = False
    try:
        try:
            with deadline.guard():
                reader.begin(budget)
                reader.execute(plan.sql, plan.params)
            first = _fetch(reader, deadline, min(batch_rows, limit + 1))
        except Exception as exc:
            raise _translate(exc, deadline, plan.source, (budget, budget_name)) from exc
        columns = plan.columns or reader.columns(first)
        convert = drivers.row_converter(reader.converters(columns, typed=plan.columns is not None))

        def batches() -> Iterator[list[tuple]]:
            nonlocal finished
            batch = first
            try:
                while batch:
                    yield convert(batch) if convert else batch
                    batch = _fetch(reader, deadline, batch_rows)
                finished = True
            except GeneratorExit:
                raise
            except Exception as exc:
                raise _translate(exc, deadline, plan.source, (budget, budget_name)) from exc

        yield QueryStream(columns, batches(), limit)
    finally:
        reader.close(finished)
        if reader.broken:
            connection.invalidate()
        connection.close()


def _fetch(reader: drivers.Reader, deadline: Deadline, size: int) -> list[tuple]:
    with deadline.guard():
        return reader.fetch(size)


def _translate(exc: Exception, deadline: Deadline, source: DataSource, budget: tuple[int, str]) -> Exception:
    if isinstance(exc, PermanentError | DataSourceUnavailableError | NotFoundError):
        return exc
    if deadline.fired or drivers.is_timeout(exc):
        return QueryTimeoutError(f"The query ran longer than {budget[0]}s ({budget[1]}) and was cancelled.")
    if drivers.is_connection_loss(exc):
        return DataSourceUnavailableError(f"Lost the connection to data source {source.name!r}.")
    if drivers.is_database_error(exc):
        return QueryRejectedError(f"The data source refused the query: {drivers.error_text(exc)}")
    return exc
