"""Dashboard widget charts as SVG, drawn by pygal from the rows the PDF shows."""

from __future__ import annotations

import base64
import re

import pygal
from pygal.style import Style

from services.renderer.writers.formatting import is_numeric
from shared.query.engine import ColumnInfo

CHART_MAX_POINTS = 30
PIE_MAX_SLICES = 10
MAX_SERIES = 5

STYLE = Style(
    background="white",
    plot_background="white",
    font_family="DejaVu Sans, sans-serif",
    colors=("#2f6690", "#d1495b", "#edae49", "#66a182", "#8d6a9f", "#3a7ca5"),
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=11,
    value_font_size=10,
)


def _split(columns: list[ColumnInfo], rows: list[tuple]) -> tuple[int | None, list[int]]:
    """The label column (first non-numeric one) and the numeric series columns."""
    numeric = [
        i
        for i in range(len(columns))
        if any(is_numeric(r[i]) for r in rows) and all(r[i] is None or is_numeric(r[i]) for r in rows)
    ]
    labels = next((i for i in range(len(columns)) if i not in numeric), None)
    return labels, numeric[:MAX_SERIES]


def chart_svg(kind: str, columns: list[ColumnInfo], rows: list[tuple]) -> bytes | None:
    """An SVG chart of the first rows, or None when there is nothing numeric to draw."""
    rows = rows[: PIE_MAX_SLICES if kind == "pie" else CHART_MAX_POINTS]
    if kind not in ("bar", "line", "pie") or not rows:
        return None
    label_index, series = _split(columns, rows)
    if not series:
        return None
    labels = [str(r[label_index]) if label_index is not None else str(n) for n, r in enumerate(rows, 1)]
    options = dict(
        style=STYLE,
        width=900,
        height=340,
        js=[],  # no script: the PDF engine fetches nothing anyway
        disable_xml_declaration=True,
        show_legend=len(series) > 1 or kind == "pie",
        legend_at_bottom=True,
        truncate_label=24,
        x_label_rotation=30 if kind != "pie" and len(rows) > 8 else 0,
    )
    if kind == "pie":
        chart = pygal.Pie(**options)
        for label, row in zip(labels, rows, strict=True):
            value = row[series[0]]
            chart.add(label, float(value) if value is not None and value >= 0 else None)
    else:
        chart = (pygal.Bar if kind == "bar" else pygal.Line)(**options)
        chart.x_labels = labels
        for index in series:
            column = columns[index]
            chart.add(column.label or column.name, [float(r[index]) if r[index] is not None else None for r in rows])
    # pygal always embeds its tooltip configuration as a script; a printed chart needs none.
    return re.sub(r"<script\b.*?</script>", "", chart.render(is_unicode=True), flags=re.S).encode("utf-8")


def data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
