"""PDF with WeasyPrint: an A4 landscape document people can read on paper.

WeasyPrint lays out the whole document in memory, at roughly a hundred table rows a
second, so only the first `max_rows` rows of each section are kept (already
formatted) and the rest is pointed to in the XLSX/CSV attachment. The table uses a
fixed layout with explicit column widths, which spares WeasyPrint the measuring pass
over every cell (see bench/render.py). All data is escaped by Jinja2, and the URL
fetcher refuses everything but inline `data:` images (the charts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from services.renderer.writers import RenderedFile, RenderMeta, Section
from services.renderer.writers.charts import CHART_MAX_POINTS, chart_svg, data_uri
from services.renderer.writers.formatting import display_text, is_numeric

MAX_COLUMNS = 16
MAX_CELL_CHARS = 400
CONTENT_TYPE = "application/pdf"
NUMERIC_TYPES = {"integer", "decimal"}
NUMERIC_FORMATS = {"currency", "percent", "integer", "decimal"}


HERE = Path(__file__).parent
CSS = (HERE / "report.css").read_text(encoding="utf-8")
_TEMPLATE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    (HERE / "report.html.j2").read_text(encoding="utf-8")
)


def safe_url_fetcher() -> URLFetcher:
    """Only inline data: URLs: user data can never make the renderer read a file or call a host."""
    return URLFetcher(allowed_protocols=("data",), allow_redirects=False, timeout=1)


@dataclass
class _PdfSection:
    section: Section
    rows: list[list[str]] = field(default_factory=list)
    raw: list[tuple] = field(default_factory=list)  # first rows, unformatted, for the chart
    lengths: list[int] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    row_count: int = 0
    truncated: bool = False


class PdfWriter:
    format = "pdf"

    def __init__(self, workdir: Path, *, timezone: str = "UTC", max_rows: int = 1000, full_data_in: tuple = ()):
        self.workdir = workdir
        self.zone = ZoneInfo(timezone)
        self.max_rows = max_rows
        self.full_data_in = tuple(f.upper() for f in full_data_in)
        self.sections: list[_PdfSection] = []
        self._current: _PdfSection | None = None

    def begin_section(self, section: Section) -> None:
        columns = section.columns[:MAX_COLUMNS]
        self._current = _PdfSection(
            section,
            lengths=[len(c.label or c.name) for c in columns],
            numeric=[c.type in NUMERIC_TYPES or c.format in NUMERIC_FORMATS for c in columns],
        )
        self.sections.append(self._current)

    def write_row(self, row: tuple) -> None:
        current = self._current
        if len(current.rows) >= self.max_rows:
            return
        columns, zone, lengths, numeric = current.section.columns, self.zone, current.lengths, current.numeric
        cells = []
        for index in range(len(lengths)):
            value = row[index]
            text = display_text(value, columns[index], zone)
            if len(text) > MAX_CELL_CHARS:
                text = text[: MAX_CELL_CHARS - 1] + "…"
            if len(text) > lengths[index]:
                lengths[index] = len(text)
            if value is not None and not numeric[index] and is_numeric(value) and not current.rows:
                numeric[index] = True  # untyped columns (raw SQL): the first row decides
            cells.append(text)
        current.rows.append(cells)
        if current.section.chart != "table" and len(current.raw) < CHART_MAX_POINTS:
            current.raw.append(row)

    def end_section(self, row_count: int, truncated: bool) -> None:
        self._current.row_count, self._current.truncated = row_count, truncated

    def _notes(self, s: _PdfSection, meta: RenderMeta) -> list[str]:
        notes = []
        where = " or ".join(self.full_data_in)
        if s.row_count > len(s.rows):
            notes.append(
                f"Showing the first {len(s.rows):,} of {s.row_count:,} rows. "
                + (f"The full data is in the {where} attachment." if where else "Add XLSX or CSV for all rows.")
            )
        if len(s.section.columns) > MAX_COLUMNS:
            notes.append(
                f"Showing {MAX_COLUMNS} of {len(s.section.columns)} columns. "
                + (f"All columns are in the {where} attachment." if where else "")
            )
        if s.truncated:
            notes.append(f"The result was cut at the report row limit of {s.row_count:,} rows (BIAPP_MAX_REPORT_ROWS).")
        return notes

    @staticmethod
    def _widths(lengths: list[int]) -> list[float]:
        # Between 4 and 40 characters' worth, so one long column cannot squeeze the others away.
        clamped = [min(40, max(4, n)) for n in lengths]
        total = sum(clamped) or 1
        return [round(100 * n / total, 2) for n in clamped]

    def html(self, meta: RenderMeta) -> str:
        sections = []
        for s in self.sections:
            columns = s.section.columns[:MAX_COLUMNS]
            svg = chart_svg(s.section.chart, s.section.columns, s.raw) if s.raw else None
            sections.append(
                {
                    "title": s.section.title,
                    "filters": s.section.filters,
                    "chart": data_uri(svg) if svg else None,
                    "notes": self._notes(s, meta),
                    "headers": [c.label or c.name for c in columns],
                    "numeric": s.numeric,
                    "widths": self._widths(s.lengths),
                    "rows": s.rows,
                }
            )
        return _TEMPLATE.render(meta=meta, sections=sections, css=CSS)

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile:
        path = self.workdir / "report.pdf"
        HTML(string=self.html(meta), url_fetcher=safe_url_fetcher(), base_url=None).write_pdf(path)
        return RenderedFile("pdf", path, f"{base_name}.pdf", CONTENT_TYPE)

    def discard(self) -> None:
        self.sections.clear()
