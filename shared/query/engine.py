"""The one entry point the renderer and alerts use to read data.

`open_stream()` yields a `QueryStream`: column metadata first, then rows pulled in
batches from a server-side cursor, never the whole result in memory. Iteration
stops at `max_rows`; `truncated` then says the result was cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import DataSourceUnavailableError, NotFoundError, QueryRejectedError
from shared.models import DataSource, SavedQuery
from shared.query.sources import SourceEngines

BATCH_ROWS = 2000


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str = "string"  # string | integer | decimal | date | datetime | boolean
    label: str | None = None
    format: str | None = None


class QueryStream:
    def __init__(self, columns: list[ColumnInfo], batches: Iterator[list[tuple]], max_rows: int):
        self.columns = columns
        self._batches = batches
        self._max_rows = max_rows
        self.truncated = False
        self.row_count = 0

    def __iter__(self) -> Iterator[tuple]:
        for batch in self._batches:
            for row in batch:
                if self.row_count >= self._max_rows:
                    self.truncated = True
                    return
                self.row_count += 1
                yield tuple(row)


@contextmanager
def open_stream(
    session: Session,
    query: SavedQuery,
    *,
    engines: SourceEngines,
    settings: Settings,
    timezone: str = "UTC",
    now: datetime | None = None,
    max_rows: int | None = None,
) -> Iterator[QueryStream]:
    limit = max_rows or settings.max_report_rows
    if query.kind != "sql":
        raise QueryRejectedError("semantic queries are not supported by this engine yet")
    source = session.get(DataSource, query.data_source_id)
    if source is None:
        raise NotFoundError("The saved query's data source no longer exists.")
    engine = engines.get(source)
    try:
        connection = engine.connect()
    except sa.exc.OperationalError as exc:
        raise DataSourceUnavailableError(f"Cannot connect to data source {source.name!r}.") from exc
    try:
        result = connection.execution_options(stream_results=True).execute(sa.text(query.sql or ""))
        result = result.yield_per(BATCH_ROWS)
        columns = [ColumnInfo(name=str(key)) for key in result.keys()]
        yield QueryStream(columns, result.partitions(), limit)
    finally:
        connection.close()
