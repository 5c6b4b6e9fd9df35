"""File writers: each takes the same stream of rows and writes one format.

A writer receives sections (one per query; several for a dashboard) and rows one by
one, so the render can fan a single pass over the data out to every format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.query.engine import ColumnInfo

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """Make a text cell inert in spreadsheet apps (CSV/formula injection)."""
    if value and value[0] in FORMULA_TRIGGERS:
        return "'" + value
    return value


@dataclass(frozen=True)
class RenderMeta:
    report_name: str
    run_time_local: str  # e.g. "2026-11-28 09:00 CET"
    timezone: str
    description: str | None = None
    filters: str | None = None


@dataclass(frozen=True)
class RenderedFile:
    format: str
    path: Path
    filename: str
    content_type: str


class Writer(Protocol):
    format: str

    def begin_section(self, title: str, columns: list[ColumnInfo]) -> None: ...

    def write_row(self, row: tuple) -> None: ...

    def end_section(self, row_count: int, truncated: bool) -> None: ...

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile: ...
