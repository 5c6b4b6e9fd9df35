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

from services.api.pagination import PAGE, keyset_paginate
from shared.models import Destination, ScheduledReport

REPORT_COLUMNS = tuple(attr.key for attr in sa.inspect(ScheduledReport).column_attrs)
DESTINATION_COLUMNS = tuple(attr.key for attr in sa.inspect(Destination).column_attrs)
MAX_ENTRIES = 4096
ORDER = (ScheduledReport.name, ScheduledReport.id)


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


# On PostgreSQL, what a report's dump is made from, read beside each report of a page (see report_page).
# `xmin` is the transaction that wrote a row's current version: any change to a row, by any means, writes
# a new one. Subqueries correlated to the page's rows, made once.
_STATE_COLUMNS = (
    sa.literal_column(
        f"(SELECT string_agg(d.id::text||':'||d.xmin::text, ',' ORDER BY d.position, d.id)"
        f" FROM destinations d WHERE d.report_id={PAGE}.id)"
    ).label("destination_versions"),
    sa.literal_column(
        f"""(SELECT array_agg(u.address ORDER BY u.address COLLATE "C")"""
        f" FROM unsubscriptions u WHERE u.report_id={PAGE}.id)"
    ).label("unsubscribed"),
    sa.literal_column(
        "(SELECT json_build_array(e.id,e.status,e.trigger,e.scheduled_for,e.queued_at,e.finished_at,e.error)::text"
        f" FROM report_executions e WHERE e.report_id={PAGE}.id ORDER BY e.queued_at DESC, e.id DESC LIMIT 1)"
    ).label("last_run"),
)


def _with_state(page: sa.Subquery) -> sa.Select:
    return sa.select(page, *_STATE_COLUMNS)


def report_page(session: Session, query: sa.Select, args: dict, dumps: DumpCache, summary) -> tuple[list, dict]:
    """A page of reports as their dumps: rows of columns first (no ORM objects); a report is loaded and
    dumped only when its state is not in `dumps` (the first time a process serves it, or after a change).

    On PostgreSQL one statement reads the page with each report's state: the version (xmin) of its row
    and of each of its destinations' rows, its last run and its unsubscribed addresses. Elsewhere the
    state is every column value of those rows, read by three more statements. `query` selects
    ScheduledReport (narrowed to what the caller may see); `summary(ids)` gives each report's (last run
    row, sorted unsubscribed addresses).
    """
    if session.get_bind().dialect.name == "postgresql":
        return _report_page_in_sql(session, query, args, dumps, summary)
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*(getattr(ScheduledReport, c) for c in REPORT_COLUMNS)),
        args,
        *ORDER,
        rows=True,
    )
    rows = body["items"]
    ids = [row.id for row in rows]
    destinations: dict = {}
    if ids:
        found = session.execute(
            sa.select(*(getattr(Destination, c) for c in DESTINATION_COLUMNS))
            .where(Destination.report_id.in_(ids))
            .order_by(Destination.report_id, Destination.position)
        )
        for row in found:
            destinations.setdefault(row.report_id, []).append(row)
    latest, gone = summary(ids)
    items = []
    for row in rows:
        last = latest.get(row.id)
        state = (
            _values(row, REPORT_COLUMNS),
            tuple(_values(d, DESTINATION_COLUMNS) for d in destinations.get(row.id, ())),
        )
        key = (*state, None if last is None else tuple(last), tuple(gone.get(row.id, ())))
        dumped = dumps.get(key)
        if dumped is None:
            report = session.get(ScheduledReport, row.id)
            report.last_execution, report.unsubscribed = last, list(gone.get(row.id, ()))
            # stored under the values dumped (they may have changed since the page's read)
            state = (
                _values(report, REPORT_COLUMNS),
                tuple(_values(d, DESTINATION_COLUMNS) for d in report.destinations),
            )
            dumped = dumps.put((*state, key[2], key[3]), dumps.schema.dump(report))
        items.append(dumped)
    body["items"] = items
    return body, headers


def _report_page_in_sql(session: Session, query: sa.Select, args: dict, dumps: DumpCache, summary):
    columns = (ScheduledReport.id, sa.literal_column("scheduled_reports.xmin::text").label("version"))
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*columns, ScheduledReport.name),
        args,
        *ORDER,
        rows=True,
        decorate=_with_state,
    )
    keys = {}
    for row in body["items"]:
        gone = tuple(sorted(row.unsubscribed or ()))
        keys[row.id] = (row.id.hex, row.version, row.destination_versions, row.last_run, gone)
    found = {report_id: dumps.get(key) for report_id, key in keys.items()}
    missed = [report_id for report_id, dumped in found.items() if dumped is None]
    if missed:  # a process's first page, or reports changed since: loaded and summarised for the page at once
        reports = session.execute(sa.select(ScheduledReport).where(ScheduledReport.id.in_(missed))).scalars()
        latest, _ = summary(missed)
        for report in reports:
            key = keys[report.id]
            report.last_execution, report.unsubscribed = latest.get(report.id), list(key[4])
            # Stored under the versions read by the page: if the report changed in between, those never
            # come back (a row's superseded version is never current again), so the entry is never hit.
            found[report.id] = dumps.put(key, dumps.schema.dump(report))
    # (a report deleted since the page was read has no dump: it is left out)
    body["items"] = [found[row.id] for row in body["items"] if found[row.id] is not None]
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
