"""Native Excel charts (openpyxl.chart) for a dashboard widget's sheet.

The chart draws the same rows as the PDF's and the email's (shared/charts.py prepares them: x
ascending in time, series pivoted, measures grouped by magnitude), so a reader who opens the
workbook sees the picture they got by email, now live and editable. The chart sits on the widget's
own sheet, right of its columns; the pivoted table it reads goes on a sheet of its own after it (a
streamed sheet cannot go back to write beside rows it has already written).
"""

from __future__ import annotations

from dataclasses import dataclass

from openpyxl.chart import AreaChart, BarChart, DoughnutChart, LineChart, PieChart, Reference
from openpyxl.utils import get_column_letter

from shared import charts, formats

CHART_KINDS = {"bar": BarChart, "line": LineChart, "area": AreaChart, "pie": PieChart, "donut": DoughnutChart}


@dataclass(frozen=True)
class PivotTable:
    """What one Excel chart reads: a header row and one row per x value, x ascending."""

    title: str
    headers: list[str]
    rows: list[list]
    number_format: str | None
    temporal: bool


def pivot_tables(request: charts.ChartRequest | None) -> list[PivotTable]:
    """One table per magnitude group (small multiples), like the PDF's charts; [] when nothing to draw."""
    if request is None or request.kind not in CHART_KINDS:
        return []
    prepared = charts._prepare(request)  # noqa: SLF001 - the one place that decides what a chart draws
    if prepared is None:
        return []
    groups = charts._magnitude_groups(prepared) if request.kind in ("bar", "line", "area") else [prepared.measures[:1]]  # noqa: SLF001
    tables = []
    for group in groups:
        if prepared.series_values:
            measure = group[0]
            keys = list(dict.fromkeys(v for v in prepared.series_values if v is not None))
            headers = [prepared.x_label, *keys]
            cells: dict[str, dict[str, float]] = {}
            for x, key, values in zip(prepared.x_values, prepared.series_values, prepared.values, strict=True):
                value = values.get(measure.name)
                if value is not None and key is not None:
                    row = cells.setdefault(x, {})
                    row[key] = row.get(key, 0.0) + value
            rows = [[x, *(cells[x].get(k) for k in keys)] for x in cells]
            title = f"{request.title}: {measure.label}"
        else:
            headers = [prepared.x_label, *(m.label for m in group)]
            sums: dict[str, list] = {}
            for x, values in zip(prepared.x_values, prepared.values, strict=True):
                row = sums.setdefault(x, [None] * len(group))
                for i, m in enumerate(group):
                    if values.get(m.name) is not None:
                        row[i] = (row[i] or 0.0) + values[m.name]
            rows = [[x, *values] for x, values in sums.items()]
            title = request.title if len(groups) == 1 else f"{request.title}: {', '.join(m.label for m in group)}"
        column = next((c for c in request.columns if c.name == group[0].name), None)
        fmt = formats.excel_format(column.format, request.locale, column_type=column.type) if column else None
        tables.append(PivotTable(title, headers, rows, fmt, prepared.temporal))
    return tables


def excel_chart(kind: str, table: PivotTable, *, sheet: str, first_row: int = 1, first_col: int = 1):
    """The chart reading `table` as written at (first_row, first_col) of the sheet named `sheet`."""
    chart = CHART_KINDS[kind]()
    chart.title = table.title
    chart.style = 10
    last_row = first_row + len(table.rows)
    last_col = first_col + len(table.headers) - 1
    quoted = "'" + sheet.replace("'", "''") + "'"
    data = f"{quoted}!${get_column_letter(first_col + 1)}${first_row}:${get_column_letter(last_col)}${last_row}"
    x = f"{quoted}!${get_column_letter(first_col)}${first_row + 1}:${get_column_letter(first_col)}${last_row}"
    chart.add_data(Reference(range_string=data), titles_from_data=True)
    chart.set_categories(Reference(range_string=x))
    if kind == "donut":
        chart.holeSize = 55
    if kind in ("bar", "line", "area"):
        if kind == "bar":
            chart.type = "col"
            chart.grouping = "clustered"
        if kind == "area" and len(table.headers) > 2:
            chart.grouping = "stacked"
            chart.overlap = 100
        if table.number_format:
            chart.y_axis.number_format = table.number_format
        chart.x_axis.delete = False
        chart.y_axis.delete = False
    chart.legend.position = "b"
    chart.width, chart.height = 18, 8.5
    return chart
