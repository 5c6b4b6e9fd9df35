"""PDF with WeasyPrint: an A4 landscape document people can read on paper.

WeasyPrint lays out the whole document in memory, at roughly a hundred table rows a
second, so only the first `max_rows` rows of each section are kept (already
formatted) and the rest is pointed to in the XLSX/CSV attachment. The table uses a
fixed layout with explicit column widths, which spares WeasyPrint the measuring pass
over every cell (see bench/render.py). All data is escaped by Jinja2, and the URL
fetcher refuses everything but inline `data:` images (the charts).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from services.renderer.summary import ChartPlan, chart_request, chart_specs
from services.renderer.writers import RenderedFile, RenderMeta, Section
from shared import charts, formats, i18n

MAX_COLUMNS = 16
MAX_CELL_CHARS = 400
PAGE_CHARS = 190  # characters of body text across an A4 landscape page
CONTENT_TYPE = "application/pdf"


log = logging.getLogger(__name__)
HERE = Path(__file__).parent
CSS = (HERE / "report.css").read_text(encoding="utf-8")
_TEMPLATE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    (HERE / "report.html.j2").read_text(encoding="utf-8")
)


def _css_text(text: str) -> str:
    """A translated word inside a CSS string: no quote or backslash can end it early."""
    return "".join(ch for ch in text if ch not in '"\\<>{}')


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def safe_url_fetcher() -> URLFetcher:
    """Only inline data: URLs: user data can never make the renderer read a file or call a host."""
    return URLFetcher(allowed_protocols=("data",), allow_redirects=False, timeout=1)


@dataclass
class _PdfSection:
    section: Section
    rows: list[list[str]] = field(default_factory=list)
    raw: list[tuple] = field(default_factory=list)  # first rows, as values, for the chart
    columns: list = field(default_factory=list)  # the section's columns, settled by the first row
    lengths: list[int] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    row_count: int = 0
    truncated: bool = False

    @property
    def charted(self) -> bool:
        return self.section.chart in charts.KINDS


class PdfWriter:
    format = "pdf"

    def __init__(
        self,
        workdir: Path,
        *,
        timezone: str = "UTC",
        max_rows: int = 1000,
        full_data_in: tuple = (),
        locale: str = "en-US",
    ):
        self.workdir = workdir
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.locale = locale
        self.max_rows = max_rows
        self.full_data_in = tuple(f.upper() for f in full_data_in)
        self.sections: list[_PdfSection] = []
        self._current: _PdfSection | None = None

    def begin_section(self, section: Section) -> None:
        columns = section.columns[:MAX_COLUMNS]
        self._current = _PdfSection(
            section,
            lengths=[len(c.label or c.name) for c in columns],
            numeric=[formats.is_right_aligned(c) for c in columns],
        )
        self.sections.append(self._current)

    def write_row(self, row: tuple) -> None:
        current = self._current
        if current.charted and len(current.raw) < charts.MAX_POINTS:
            current.raw.append(row)
        if len(current.rows) >= self.max_rows:
            return
        if not current.rows:  # untyped columns (raw SQL): the first row decides how numbers read
            current.columns = formats.settle_columns(current.section.columns, row)
        columns, lengths, numeric = current.columns, current.lengths, current.numeric
        locale, zone = self.locale, self.timezone
        cells = []
        for index in range(len(lengths)):
            value = row[index]
            text = formats.format_value(value, columns[index], locale, zone)
            if len(text) > MAX_CELL_CHARS:
                text = text[: MAX_CELL_CHARS - 1] + "…"
            if len(text) > lengths[index]:
                lengths[index] = len(text)
            if value is not None and not numeric[index] and formats.is_number(value) and not current.rows:
                numeric[index] = True  # untyped columns (raw SQL): the first row decides
            cells.append(text)
        current.rows.append(cells)

    def end_section(self, row_count: int, truncated: bool) -> None:
        self._current.row_count, self._current.truncated = row_count, truncated

    def _t(self, message: str, **params) -> str:
        return i18n.gettext(self.locale, message, **params)

    def _count(self, n: int) -> str:
        return formats.format_number(n, "integer", self.locale)

    def _notes(self, s: _PdfSection, meta: RenderMeta) -> list[str]:
        notes = []
        where = " / ".join(self.full_data_in)
        if s.row_count > len(s.rows):
            shown = self._t(
                "Showing the first %(shown)s of %(total)s rows.",
                shown=self._count(len(s.rows)),
                total=self._count(s.row_count),
            )
            rest = (
                self._t("The full data is in the %(files)s attachment.", files=where)
                if where
                else self._t("Add XLSX or CSV for all rows.")
            )
            notes.append(f"{shown} {rest}")
        if len(s.section.columns) > MAX_COLUMNS:
            shown = self._t("Showing %(shown)s of %(total)s columns.", shown=MAX_COLUMNS, total=len(s.section.columns))
            rest = self._t("All columns are in the %(files)s attachment.", files=where) if where else ""
            notes.append(f"{shown} {rest}".strip())
        if s.truncated:
            notes.append(
                self._t(
                    "The result was cut at the report row limit of %(count)s rows (BIAPP_MAX_REPORT_ROWS).",
                    count=self._count(s.row_count),
                )
            )
        return notes

    @staticmethod
    def _widths(lengths: list[int]) -> list[float]:
        # Between 4 and 40 characters' worth, so one long column cannot squeeze the others away.
        clamped = [min(40, max(4, n)) for n in lengths]
        total = sum(clamped) or 1
        return [round(100 * n / total, 2) for n in clamped]

    @staticmethod
    def _table_width(lengths: list[int]) -> int:
        """A few narrow columns take the room they need, not the whole landscape page."""
        needed = sum(min(40, max(4, n)) + 3 for n in lengths)  # characters, with cell padding
        return max(30, min(100, round(needed * 100 / PAGE_CHARS)))

    def _charts(self, s: _PdfSection) -> tuple[list[str], str]:
        plan = s.section.plan if isinstance(s.section.plan, ChartPlan) else ChartPlan(s.section.chart)
        request = chart_request(
            s.section.title,
            s.section.columns,
            s.raw,
            plan,
            locale=self.locale,
            timezone=self.timezone,
            previous=s.section.previous_kpi,
        )
        uris = []
        for spec in chart_specs(request):
            try:
                uris.append(_data_uri(charts.to_svg(spec)))
            except Exception:
                log.warning("chart %r could not be drawn", s.section.title, exc_info=True)
        return uris, (charts.alt_text(request) if uris else "")

    def html(self, meta: RenderMeta) -> str:
        sections = []
        for s in self.sections:
            columns = s.section.columns[:MAX_COLUMNS]
            chart_uris, alt = self._charts(s) if s.raw else ([], "")
            sections.append(
                {
                    "title": s.section.title,
                    "filters": s.section.filters,
                    "charts": chart_uris,
                    "chart_alt": alt,
                    "kpi": s.section.chart == "kpi",
                    "notes": self._notes(s, meta),
                    "headers": [c.label or c.name for c in columns],
                    "numeric": s.numeric,
                    "widths": self._widths(s.lengths),
                    "table_width": self._table_width(s.lengths),
                    "rows": s.rows,
                }
            )
        words = {
            "run_time": self._t("Run time: %(time)s (%(zone)s)", time=meta.run_time_local, zone=meta.timezone),
            "filters": self._t("Filters applied"),
            "no_rows": self._t("No rows."),
            "rows": self._t("Rows"),
            "page": _css_text(self._t("Page")),
            "of": _css_text(self._t("of")),
        }
        return _TEMPLATE.render(
            meta=meta, sections=sections, css=CSS, words=words, lang=i18n.language(self.locale) or "en"
        )

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile:
        path = self.workdir / "report.pdf"
        HTML(string=self.html(meta), url_fetcher=safe_url_fetcher(), base_url=None).write_pdf(path)
        return RenderedFile("pdf", path, f"{base_name}.pdf", CONTENT_TYPE)

    def discard(self) -> None:
        self.sections.clear()
