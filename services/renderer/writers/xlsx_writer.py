"""XLSX with openpyxl's write-only workbook: rows go to disk as they come, memory stays flat.

Typed cells carry number formats from the catalog; the header is bold and frozen with
an autofilter; column widths come from the first rows (a write-only sheet writes its
column widths before its first row, so those rows are held back briefly). A section
longer than one sheet continues on the next one. Dashboards get a cover sheet.

The hot path: one converter per column, chosen once per sheet from the column's declared
type (exact type test first, the general `_cell` for anything unexpected), and one styled
cell per column and kind that carries every row's value. openpyxl's write-only sheet
would turn each styled cell it is handed into a caught ValueError plus a fresh cell, so
each sheet gets `_fast_cells` in place of its `_values_to_row` (see there).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from operator import call
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from services.renderer.summary import ChartPlan, chart_request
from services.renderer.writers import (
    FORMULA_TRIGGERS,
    RenderedFile,
    RenderMeta,
    Section,
    SectionResult,
    truncation_note,
)
from services.renderer.writers.formatting import (
    EXCEL_DATE,
    EXCEL_DATETIME,
    NUMERIC,
    display_text,
    local_naive,
)
from services.renderer.writers.xlsx_charts import CHART_KINDS, excel_chart, pivot_tables
from shared import charts, formats, i18n
from shared.query.engine import ColumnInfo

EXCEL_MAX_ROWS = 1_048_576  # rows in one sheet, header included
EXCEL_MAX_TEXT = 32_767
WIDTH_SAMPLE_ROWS = 100
MIN_WIDTH, MAX_WIDTH = 6, 60
# Control characters openpyxl refuses, plus what XML cannot carry (U+FFFE, U+FFFF, lone surrogates): shown as U+FFFD.
NOT_IN_CELLS = re.compile(ILLEGAL_CHARACTERS_RE.pattern + "|[\ud800-\udfff\ufffe\uffff]")
# Those and carriage returns, which XML readers take as line feeds. lxml (openpyxl's fast path)
# would escape them and keep them; they are written as the line feeds readers always saw.
NEEDS_CLEANING = re.compile(NOT_IN_CELLS.pattern + "|\r")
SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\\x00-\x1f\ud800-\udfff\ufffe\uffff]")
CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
log = logging.getLogger(__name__)

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE3EA")
TITLE_FONT = Font(bold=True, size=14)
NOTE_FONT = Font(italic=True, color="9C2F2F")


def print_setup(ws) -> None:
    """Printed (or turned into a PDF) the way people expect: landscape, as wide as one page."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = 9  # A4
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0


def sheet_name(title: str, used: set[str]) -> str:
    """Excel's rules: 31 characters, none of []:*?/\\, not blank, unique ignoring case."""
    base = " ".join(SHEET_NAME_FORBIDDEN.sub(" ", title).split()).strip("'") or "Sheet"
    base = "Sheet" if base.lower() == "history" else base
    name, counter = base[:31].rstrip(), 2
    while name.lower() in used:
        suffix = f" ({counter})"
        name = base[: 31 - len(suffix)].rstrip() + suffix
        counter += 1
    used.add(name.lower())
    return name


def clean_text(value: str) -> str:
    if NOT_IN_CELLS.search(value):
        value = NOT_IN_CELLS.sub("\ufffd", value)
    value = value[:EXCEL_MAX_TEXT]
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value


class _PreparedCell(Cell):
    """A styled cell that carries many rows' values; its style is set once, so its style id is looked up once."""

    __slots__ = ("_style_id",)

    def __init__(self, worksheet):
        super().__init__(worksheet, row=1, column=1)
        self._style_id = None

    @property
    def style_id(self) -> int:
        if self._style_id is None:
            self._style_id = super().style_id
        return self._style_id


class _Cells:
    """Styled cells of one sheet, made once and reused for every row.

    The write-only sheet serialises each cell as soon as it is appended, so one
    styled cell per (column, kind) can carry every row's value. This keeps the
    per-cell cost close to writing bare values.
    """

    def __init__(self, ws, columns: list[ColumnInfo], locale: str = "en-US"):
        self.ws = ws
        self._cache: dict[tuple[int, str], WriteOnlyCell] = {}
        self.formats = [formats.excel_format(c.format, locale, column_type=c.type) for c in columns]

    def get(self, index: int, kind: str) -> WriteOnlyCell:
        key = (index, kind)
        cell = self._cache.get(key)
        if cell is None:
            cell = _PreparedCell(self.ws)
            if kind == "text":
                cell.quotePrefix = True  # Excel's own "this is text" marker ('=…)
            elif kind == "date":
                cell.number_format = EXCEL_DATE
            elif kind == "datetime":
                cell.number_format = EXCEL_DATETIME
            elif kind == "number":
                cell.number_format = self.formats[index]
            self._cache[key] = cell
        return cell


def _fast_cells(ws):
    """A drop-in for `WriteOnlyWorksheet._values_to_row` (openpyxl 3.1) without its per-cell waste.

    openpyxl's own version assigns every appended value to a scratch cell, which for a Cell
    raises and catches a ValueError (formatting the cell's repr on the way), and makes a new
    scratch cell after every styled one. Here a Cell we prepared is passed on as it is and
    plain values share one scratch cell. Should openpyxl stop calling this hook, its own
    version takes over and the output stays the same, only slower.
    """
    scratch = [WriteOnlyCell(ws)]

    def values_to_row(values, row_idx):
        plain = scratch[0]
        for col_idx, value in enumerate(values, 1):
            if value is None:
                continue
            if type(value) is _PreparedCell or isinstance(value, Cell):
                cell = value
            else:
                cell = plain
                cell.value = value
            cell.column = col_idx
            cell.row = row_idx
            yield cell
            if cell is plain and plain._style is not None and plain.has_style:  # e.g. a time value got a format
                plain = scratch[0] = WriteOnlyCell(ws)

    return values_to_row


class XlsxWriter:
    format = "xlsx"

    def __init__(
        self,
        workdir: Path,
        *,
        timezone: str = "UTC",
        cover: bool = False,
        sheet_max_rows: int = EXCEL_MAX_ROWS,
        locale: str = "en-US",
    ):
        self.workdir = workdir
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.locale = locale
        self._raw: list[tuple] = []  # a charted section's first rows, for its native chart
        self._charts: list = []  # (section, its data sheet, pivot tables, its result) to draw at the end
        self.rows_per_sheet = sheet_max_rows - 1
        self.workbook = Workbook(write_only=True)
        self.used_names: set[str] = set()
        summary = i18n.gettext(locale, "Summary")
        self.cover = self.workbook.create_sheet(sheet_name(summary, self.used_names)) if cover else None
        self.results: list[SectionResult] = []
        self._section: Section | None = None
        self._ws = None
        self._cells: _Cells | None = None
        self._converters: list = []
        self._in_sheet = 0
        self._pending: list[tuple] | None = None
        self._widths: list[int] = []

    # --- sections -----------------------------------------------------------------

    def begin_section(self, section: Section) -> None:
        self._section = section
        self.results.append(SectionResult(section.title, filters=section.filters))
        self._widths = [len(c.label or c.name) + 2 for c in section.columns]
        self._pending = []
        self._raw = []
        self._open_sheet()

    def _open_sheet(self) -> None:
        section = self._section
        result = self.results[-1]
        title = section.title if not result.parts else f"{section.title} ({len(result.parts) + 1})"
        name = sheet_name(title, self.used_names)
        ws = self.workbook.create_sheet(name)
        if hasattr(ws, "_values_to_row"):
            ws._values_to_row = _fast_cells(ws)
        ws.freeze_panes = "A2"
        print_setup(ws)
        ws.print_title_rows = "1:1"  # the header on every printed page
        result.parts.append(name)
        self._ws = ws
        self._cells = _Cells(ws, section.columns, self.locale)
        self._converters = [self._converter(i, c) for i, c in enumerate(section.columns)]
        self._in_sheet = 0
        if self._pending is None:  # a continuation sheet: widths are known already
            self._start_sheet()

    def _start_sheet(self) -> None:
        """Widths and the header must precede the first data row of a write-only sheet."""
        ws = self._ws
        for index, width in enumerate(self._widths, start=1):
            ws.column_dimensions[get_column_letter(index)].width = max(MIN_WIDTH, min(MAX_WIDTH, width))
        header = []
        for column in self._section.columns:
            cell = WriteOnlyCell(ws, value=clean_text(column.label or column.name))
            cell.data_type = "s"
            cell.font, cell.fill = HEADER_FONT, HEADER_FILL
            cell.alignment = Alignment(vertical="center")
            header.append(cell)
        ws.append(header)

    def write_row(self, row: tuple) -> None:
        if self._section.chart in CHART_KINDS and len(self._raw) < charts.MAX_POINTS:
            self._raw.append(row)
        if self._pending is not None:
            self._pending.append(row)
            self._measure(row)
            if len(self._pending) >= WIDTH_SAMPLE_ROWS:
                self._flush_pending()
            return
        self._append(row)

    def _measure(self, row: tuple) -> None:
        widths, columns, locale, zone = self._widths, self._section.columns, self.locale, self.timezone
        for index, value in enumerate(row):
            if value is not None:
                text = formats.format_value(value, columns[index], locale, zone)
                length = max((len(line) for line in text.split("\n")), default=0)
                if length + 2 > widths[index]:
                    widths[index] = length + 2

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending:  # untyped columns (raw SQL): the first row decides their number format
            settled = formats.settle_columns(self._section.columns, pending[0])
            if settled != self._section.columns:
                self._section = dataclasses.replace(self._section, columns=settled)
                self._cells = _Cells(self._ws, settled, self.locale)
                self._converters = [self._converter(i, c) for i, c in enumerate(settled)]
        self._start_sheet()
        for row in pending:
            self._append(row)

    def _append(self, row: tuple) -> None:
        if self._in_sheet >= self.rows_per_sheet:
            self._close_sheet()
            self._open_sheet()
        converters = self._converters
        if len(row) == len(converters):
            self._ws.append(list(map(call, converters, row)))
        else:  # a row not shaped like the columns
            self._ws.append([self._cell(i, v) for i, v in enumerate(row)])
        self._in_sheet += 1

    def _converter(self, index: int, column: ColumnInfo):
        """`value -> what to append` for one column: the declared type's case inline, `_cell` for the rest."""
        general, cell = self._cell, self._cells.get
        if column.type == "datetime":
            target, zone = cell(index, "datetime"), self.zone

            def convert(value):
                if type(value) is datetime:
                    target.value = value.astimezone(zone).replace(tzinfo=None) if value.tzinfo is not None else value
                    return target
                return general(index, value)

        elif column.type == "date":
            target = cell(index, "date")

            def convert(value):
                if type(value) is date:
                    target.value = value
                    return target
                return general(index, value)

        elif column.type in ("integer", "decimal") or column.format is not None:
            if self._cells.formats[index] is None:

                def convert(value):
                    kind = type(value)
                    return value if kind is int or kind is Decimal or kind is float else general(index, value)

            else:
                target = cell(index, "number")

                def convert(value):
                    kind = type(value)
                    if kind is Decimal or kind is int or kind is float:
                        target.value = value
                        return target
                    return general(index, value)

        elif column.type == "string":
            search = NEEDS_CLEANING.search

            def convert(value):
                if type(value) is str and len(value) <= EXCEL_MAX_TEXT and not search(value):
                    return value if not value or value[0] not in FORMULA_TRIGGERS else general(index, value)
                return general(index, value)

        else:

            def convert(value):
                return general(index, value)

        return convert

    def _cell(self, index: int, value: object) -> object:
        if value is None:
            return None
        kind = type(value)
        if kind is int or kind is float:
            if self._cells.formats[index] is None:
                return value
            cell = self._cells.get(index, "number")
        elif kind is str:
            formula_like = value[:1] in FORMULA_TRIGGERS
            if NEEDS_CLEANING.search(value) or len(value) > EXCEL_MAX_TEXT:
                value = clean_text(value)
            if not formula_like:
                return value
            cell = self._cells.get(index, "text")
            cell.value = value
            cell.data_type = "s"  # never a formula
            return cell
        elif kind is bool:
            return value
        elif isinstance(value, datetime):
            cell = self._cells.get(index, "datetime")
            value = local_naive(value, self.zone)
        elif isinstance(value, date):
            cell = self._cells.get(index, "date")
        elif isinstance(value, NUMERIC):
            if self._cells.formats[index] is None:
                return value
            cell = self._cells.get(index, "number")
        elif isinstance(value, (time, timedelta)):
            return value
        else:
            return self._cell(index, display_text(value, self._section.columns[index], self.zone))
        cell.value = value
        return cell

    def _close_sheet(self) -> None:
        ws, columns = self._ws, self._section.columns
        if columns:
            ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{self._in_sheet + 1}"

    def end_section(self, row_count: int, truncated: bool) -> None:
        if self._pending is not None:
            self._flush_pending()
        result = self.results[-1]
        result.row_count, result.truncated = row_count, truncated
        self._close_sheet()
        if truncated:
            self._ws.append([])
            self._ws.append([self._note(truncation_note(row_count))])
        if self._raw:
            self._plan_charts()

    def _plan_charts(self) -> None:
        """Native charts for this widget, drawn when the workbook is finished (see _write_charts)."""
        section, data_sheet = self._section, self._ws
        plan = section.plan if isinstance(section.plan, ChartPlan) else ChartPlan(section.chart)
        request = chart_request(
            section.title, section.columns, self._raw, plan, locale=self.locale, timezone=self.timezone
        )
        self._raw = []
        try:
            tables = pivot_tables(request)
        except Exception:
            log.warning("no Excel chart for %r", section.title, exc_info=True)
            return
        if tables:
            self._charts.append((section, data_sheet, tables, self.results[-1]))

    def _write_charts(self) -> None:
        """Each charted widget's pivoted rows on a sheet after all the data, its charts beside its own data."""
        for section, data_sheet, tables, result in self._charts:
            self._write_chart_sheet(section, data_sheet, tables, result)

    def _write_chart_sheet(self, section: Section, data_sheet, tables, result: SectionResult) -> None:
        name = sheet_name(f"{section.title} {i18n.gettext(self.locale, 'chart data')}", self.used_names)
        ws = self.workbook.create_sheet(name)
        print_setup(ws)
        ws.column_dimensions["A"].width = 22
        result.parts.append(name)
        row = 1
        anchor_column = get_column_letter(min(len(section.columns), 40) + 2)
        for number, table in enumerate(tables):
            ws.append([self._text(ws, h, HEADER_FONT) for h in table.headers])
            for values in table.rows:
                cells = [self._x_cell(ws, values[0], table.temporal)]
                for value in values[1:]:
                    cell = WriteOnlyCell(ws, value=value)
                    if table.number_format:
                        cell.number_format = table.number_format
                    cells.append(cell)
                ws.append(cells)
            chart = excel_chart(section.chart, table, sheet=name, first_row=row)
            data_sheet.add_chart(chart, f"{anchor_column}{2 + number * 18}")
            ws.append([])
            row += len(table.rows) + 2

    def _x_cell(self, ws, value: str, temporal: bool) -> WriteOnlyCell:
        if temporal:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return self._text(ws, value)
            cell = WriteOnlyCell(ws, value=moment.date() if len(value) == 10 else moment)
            cell.number_format = EXCEL_DATE if len(value) == 10 else EXCEL_DATETIME
            return cell
        return self._text(ws, value)

    def _note(self, text: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(self._ws, value=clean_text(text))
        cell.data_type = "s"
        cell.font = NOTE_FONT
        return cell

    # --- the file -----------------------------------------------------------------

    def _text(self, ws, value: str | None, font: Font | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(ws, value=clean_text(value or ""))
        cell.data_type = "s"
        if value and value[0] in FORMULA_TRIGGERS:
            cell.quotePrefix = True
        if font is not None:
            cell.font = font
        return cell

    def _write_cover(self, meta: RenderMeta) -> None:
        ws = self.cover
        print_setup(ws)
        for letter, width in zip("ABCDE", (34, 28, 12, 40, 50), strict=True):
            ws.column_dimensions[letter].width = width
        ws.append([self._text(ws, meta.report_name, TITLE_FONT)])
        if meta.description:
            ws.append([self._text(ws, meta.description)])
        t = partial(i18n.gettext, self.locale)
        ws.append([self._text(ws, t("Run time"), HEADER_FONT), self._text(ws, meta.run_time_local)])
        ws.append([self._text(ws, t("Time zone"), HEADER_FONT), self._text(ws, meta.timezone)])
        ws.append([])
        ws.append(
            [
                self._text(ws, t(label), HEADER_FONT)
                for label in ("Section", "Sheets", "Rows", "Filters applied", "Note")
            ]
        )
        for result in self.results:
            count = WriteOnlyCell(ws, value=result.row_count)
            count.number_format = "#,##0"
            ws.append(
                [
                    self._text(ws, result.title),
                    self._text(ws, ", ".join(result.parts)),
                    count,
                    self._text(ws, "; ".join(result.filters) or t("none")),
                    self._text(ws, truncation_note(result.row_count) if result.truncated else ""),
                ]
            )

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile:
        self._write_charts()
        if self.cover is not None:
            self._write_cover(meta)
        if not self.results:  # a dashboard without widgets still opens in Excel
            self.workbook.create_sheet(sheet_name(meta.report_name, self.used_names))
        path = self.workdir / "report.xlsx"
        self.workbook.save(path)
        return RenderedFile("xlsx", path, f"{base_name}.xlsx", CONTENT_TYPE)

    def discard(self) -> None:
        """Remove the sheets' temporary files (write-only sheets spool to the temp directory)."""
        for ws in self.workbook.worksheets:
            if getattr(ws, "_writer", None) is None:
                continue
            try:
                ws.close()  # ends the sheet's XML stream cleanly, then the file can go
            except Exception:  # noqa: S110 - best effort after a failure
                pass
            try:
                ws._writer.cleanup()
            except Exception:  # noqa: S110
                pass
