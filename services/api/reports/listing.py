"""The reports list: each report is dumped once per state and the dump reused until that state changes.

Dumping a report (schedule, destinations, message settings, last run) through ReportSchema is most of a
list page's time, and a report changes far less often than the list is read. Each worker process keeps
the dumps of the reports it served, keyed by everything the dump is made from: every column
of the report and of each of its destinations, its last run and its unsubscribed addresses, all read
from the database on every request. Any change to any of them (through the API, a worker, or SQL by
hand) is a new key, so a list never shows a stale report; the cache only saves the work of dumping an
unchanged one again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import orjson
import sqlalchemy as sa
from marshmallow import Schema
from sqlalchemy.orm import Session

from services.api.pagination import keyset_paginate
from shared.models import Destination, ScheduledReport

REPORT_COLUMNS = tuple(attr.key for attr in sa.inspect(ScheduledReport).column_attrs)
DESTINATION_COLUMNS = tuple(attr.key for attr in sa.inspect(Destination).column_attrs)
MAX_ENTRIES = 4096


def _values(obj, columns: tuple[str, ...]) -> tuple:
    """The column values of an ORM object or a row of those columns, each hashable (JSON values encoded)."""
    loaded = getattr(obj, "__dict__", None) or {}
    values = []
    for column in columns:
        value = loaded[column] if column in loaded else getattr(obj, column)
        try:
            hash(value)
        except TypeError:  # a JSON column's dict or list
            value = orjson.dumps(value, default=str)
        values.append(value)
    return tuple(values)


def _versions(session: Session) -> tuple[list, list] | None:
    """On PostgreSQL, the columns that say which version of a row this is: its id and its `xmin`, the
    transaction that wrote this version (any change to the row, by any means, writes a new one)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    report = [ScheduledReport.id, sa.literal_column("scheduled_reports.xmin::text").label("version")]
    destination = [Destination.report_id, Destination.id, sa.literal_column("destinations.xmin::text").label("version")]
    return report, destination


def report_page(session: Session, query: sa.Select, args: dict, dumps: DumpCache, summary) -> tuple[list, dict]:
    """A page of reports as their dumps: rows of columns first (no ORM objects); a report is loaded and
    dumped only when its state is not in `dumps` (the first time a process serves it, or after a change).

    On PostgreSQL a report's state is the version (xmin) of its row and of each of its destinations' rows,
    its last run and its unsubscribed addresses; elsewhere every column value of those rows. `query`
    selects ScheduledReport (narrowed to what the caller may see); `summary(ids)` gives each report's
    (last run row, sorted unsubscribed addresses).
    """
    versions = _versions(session)
    if versions is None:
        report_columns = [getattr(ScheduledReport, c) for c in REPORT_COLUMNS]
        destination_columns = [getattr(Destination, c) for c in DESTINATION_COLUMNS]
    else:
        report_columns, destination_columns = versions
        report_columns = [*report_columns, ScheduledReport.name]
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*report_columns),
        args,
        ScheduledReport.name,
        ScheduledReport.id,
        rows=True,
    )
    rows = body["items"]
    ids = [row.id for row in rows]
    destinations: dict = {}
    if ids:
        found = session.execute(
            sa.select(*destination_columns)
            .where(Destination.report_id.in_(ids))
            .order_by(Destination.report_id, Destination.position)
        )
        for row in found:
            destinations.setdefault(row.report_id, []).append(row)
    latest, gone = summary(ids)
    items = []
    for row in rows:
        last = latest.get(row.id)
        if versions is None:
            state = (
                _values(row, REPORT_COLUMNS),
                tuple(_values(d, DESTINATION_COLUMNS) for d in destinations.get(row.id, ())),
            )
        else:
            state = (row.id.hex, row.version, tuple((d.id.hex, d.version) for d in destinations.get(row.id, ())))
        key = (*state, None if last is None else tuple(last), tuple(gone.get(row.id, ())))
        dumped = dumps.get(key)
        if dumped is None:
            report = session.get(ScheduledReport, row.id)
            report.last_execution, report.unsubscribed = last, list(gone.get(row.id, ()))
            if versions is None:  # stored under the values dumped (they may have changed since the page's read)
                state = (
                    _values(report, REPORT_COLUMNS),
                    tuple(_values(d, DESTINATION_COLUMNS) for d in report.destinations),
                )
                key = (*state, key[2], key[3])
            # On PostgreSQL, stored under the versions read above: if the report changed in between, those
            # never come back (a row's superseded version is never current again), so the entry is never hit.
            dumped = dumps.put(key, dumps.schema.dump(report))
        items.append(dumped)
    body["items"] = items
    return body, headers


class DumpCache:
    """Dumps by state key, the least recently used dropped beyond `max_entries` (per process, thread-safe)."""

    def __init__(self, schema: Schema, max_entries: int = MAX_ENTRIES):
        self.schema = schema
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple, dumped: dict) -> dict:
        with self._lock:
            self._items[key] = dumped
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return dumped

    def __len__(self) -> int:
        return len(self._items)
