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

from shared.models import Destination, ScheduledReport

REPORT_COLUMNS = tuple(attr.key for attr in sa.inspect(ScheduledReport).column_attrs)
DESTINATION_COLUMNS = tuple(attr.key for attr in sa.inspect(Destination).column_attrs)
MAX_ENTRIES = 4096


def _values(obj, columns: tuple[str, ...]) -> tuple:
    """The object's column values, each hashable (JSON values as their encoding)."""
    loaded = obj.__dict__
    values = []
    for column in columns:
        value = loaded[column] if column in loaded else getattr(obj, column)
        try:
            hash(value)
        except TypeError:  # a JSON column's dict or list
            value = orjson.dumps(value, default=str)
        values.append(value)
    return tuple(values)


def state_key(report: ScheduledReport) -> tuple:
    """Everything a report's dump is made from, as one hashable value (compared in full, never by digest)."""
    last = getattr(report, "last_execution", None)
    return (
        _values(report, REPORT_COLUMNS),
        tuple(_values(d, DESTINATION_COLUMNS) for d in report.destinations),
        None if last is None else tuple(last),
        tuple(getattr(report, "unsubscribed", ())),
    )


class DumpCache:
    """Dumps by state key, the least recently used dropped beyond `max_entries` (per process, thread-safe)."""

    def __init__(self, schema: Schema, max_entries: int = MAX_ENTRIES):
        self.schema = schema
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def dump(self, report: ScheduledReport) -> dict:
        key = state_key(report)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        dumped = self.schema.dump(report)
        with self._lock:
            self._items[key] = dumped
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return dumped

    def __len__(self) -> int:
        return len(self._items)
