"""File writers: each takes the same stream of rows and writes one format.

A writer receives sections (one per query; several for a dashboard) and rows one by
one, so the render can fan a single pass over the data out to every format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shared.query.engine import ColumnInfo

FORMULA_TRIGGERS = frozenset("=+-@\t\r")


def is_formula_like(value: str) -> bool:
    return bool(value) and value[0] in FORMULA_TRIGGERS


def neutralise(value: str) -> str:
    """Make a text cell inert in spreadsheet apps (CSV/formula injection)."""
    if value and value[0] in FORMULA_TRIGGERS:
        return "'" + value
    return value


@dataclass(frozen=True)
class Section:
    """One table of the output: the report's query, or one dashboard widget."""

    title: str
    columns: list[ColumnInfo]
    chart: str = "table"  # table | bar | line | area | pie | donut | kpi
    filters: tuple[str, ...] = ()  # in words, in the report's language
    plan: object = None  # services.renderer.summary.ChartPlan: x, series and measures of the chart
    previous_kpi: dict | None = None  # a KPI card's value on the last delivered run


@dataclass(frozen=True)
class RenderMeta:
    report_name: str
    run_time_local: str  # e.g. "2026-11-28 09:00 CET"
    timezone: str
    description: str | None = None
    max_report_rows: int | None = None


@dataclass(frozen=True)
class RenderedFile:
    format: str
    path: Path
    filename: str
    content_type: str


@dataclass
class SectionResult:
    """What a writer remembers about a finished section (for cover sheets and notes)."""

    title: str
    row_count: int = 0
    truncated: bool = False
    filters: tuple[str, ...] = ()
    parts: list[str] = field(default_factory=list)  # sheet names or file names holding it


class Writer(Protocol):
    format: str

    def begin_section(self, section: Section) -> None: ...

    def write_row(self, row: tuple) -> None: ...

    def end_section(self, row_count: int, truncated: bool) -> None: ...

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile: ...

    def discard(self) -> None:
        """Release open files after a failure or a skipped run."""


def truncation_note(row_count: int, fmt_hint: str = "") -> str:
    return (
        f"Only the first {row_count:,} rows are included: the result was cut at the report row limit"
        f" (BIAPP_MAX_REPORT_ROWS).{fmt_hint}"
    )
