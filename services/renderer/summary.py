"""What a run found, kept beside its files: each section's true row count, first rows and charts.

The summary rides along the same single pass over the rows as the file writers. It keeps the
first rows of each section formatted in the report's locale (for the email, Slack and Teams),
and the first rows as values for the section's chart: a Vega-Lite spec (shared/charts.py) that
the PDF draws as SVG and the mailer as PNG — one spec, two renderings. A KPI card remembers its
value so the next run can show the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared import charts, formats
from shared.query.columns import ColumnInfo

log = logging.getLogger(__name__)

PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 12
PREVIEW_CELL_CHARS = 120


@dataclass(frozen=True)
class ChartPlan:
    """What a section's chart draws (from its dashboard widget)."""

    kind: str = "table"
    x: str | None = None
    series: str | None = None
    measures: tuple[str, ...] = ()


def chart_request(
    title: str,
    columns: list[ColumnInfo],
    rows: list[tuple],
    plan: ChartPlan,
    *,
    locale: str,
    timezone: str,
    previous: dict | None = None,
) -> charts.ChartRequest | None:
    if plan.kind not in charts.KINDS or not rows:
        return None
    return charts.ChartRequest(
        kind=plan.kind,
        title=title,
        columns=list(columns),
        rows=list(rows),
        x=plan.x,
        series=plan.series,
        measures=tuple(plan.measures),
        locale=locale,
        timezone=timezone,
        previous=previous,
    )


def chart_specs(request: charts.ChartRequest | None) -> list[dict]:
    """The section's chart specs; a chart that cannot be drawn never fails the run (the table still tells)."""
    if request is None:
        return []
    try:
        return charts.build_specs(request)
    except Exception:
        log.warning("chart %r could not be drawn", request.title, exc_info=True)
        return []


@dataclass
class _Collected:
    title: str
    columns: list[ColumnInfo]
    plan: ChartPlan
    filters: tuple[str, ...]
    previous: dict | None
    preview: list[list[str]] = field(default_factory=list)
    raw: list[tuple] = field(default_factory=list)
    row_count: int = 0
    truncated: bool = False


class SummaryCollector:
    """Fed like a writer (begin_section / write_row / end_section); `summary()` is the run's summary."""

    format = "summary"

    def __init__(self, *, locale: str, timezone: str, previous: dict | None = None):
        self.locale = locale
        self.timezone = timezone
        self.previous_kpis = {s.get("title"): s.get("kpi") for s in (previous or {}).get("sections", ()) if s}
        self.sections: list[_Collected] = []
        self._current: _Collected | None = None

    def begin_section(self, title: str, columns: list[ColumnInfo], plan: ChartPlan, filters: tuple[str, ...]):
        self._current = _Collected(title, list(columns), plan, tuple(filters), self.previous_kpis.get(title))
        self.sections.append(self._current)

    def write_row(self, row: tuple) -> None:
        current = self._current
        if not current.preview and not current.raw:  # untyped columns (raw SQL): the first row decides
            current.columns = formats.settle_columns(current.columns, row)
        if len(current.preview) < PREVIEW_ROWS:
            current.preview.append(
                [self._cell(value, column) for value, column in zip(row, current.columns, strict=False)]
            )
        if current.plan.kind != "table" and len(current.raw) < charts.MAX_POINTS:
            current.raw.append(row)

    def _cell(self, value: object, column: ColumnInfo) -> str:
        text = formats.format_value(value, column, self.locale, self.timezone)
        return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"

    def end_section(self, row_count: int, truncated: bool) -> None:
        self._current.row_count, self._current.truncated = row_count, truncated

    def summary(self) -> dict:
        return {"locale": self.locale, "sections": [self._section(s) for s in self.sections]}

    def _section(self, s: _Collected) -> dict:
        columns = s.columns[:PREVIEW_COLUMNS]
        request = chart_request(
            s.title, s.columns, s.raw, s.plan, locale=self.locale, timezone=self.timezone, previous=s.previous
        )
        specs = chart_specs(request)
        kpi = None
        if request is not None and s.plan.kind == "kpi":
            try:
                kpi = charts.kpi_values(request)
            except Exception:
                log.warning("KPI %r could not be computed", s.title, exc_info=True)
        first = s.raw[0] if s.raw else None
        return {
            "title": s.title,
            "row_count": s.row_count,
            "truncated": s.truncated,
            "columns": [c.label or c.name for c in columns],
            "align": [
                "right" if formats.is_right_aligned(c, first[i] if first else None) else "left"
                for i, c in enumerate(columns)
            ],
            "rows": [r[:PREVIEW_COLUMNS] for r in s.preview],
            "chart": s.plan.kind,
            "charts": specs,
            "chart_alt": charts.alt_text(request) if specs else "",
            "filters": list(s.filters),
            "kpi": kpi,
        }
