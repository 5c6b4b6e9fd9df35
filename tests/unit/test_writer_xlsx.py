"""The XLSX writer, fed directly with columns and rows, checked by opening the file with openpyxl."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import openpyxl
import pytest

from services.renderer.writers import RenderMeta, Section
from services.renderer.writers.xlsx_writer import EXCEL_MAX_ROWS, XlsxWriter, sheet_name
from shared.query.engine import ColumnInfo

META = RenderMeta("Quarterly Sales", "2026-11-28 09:00 CET", "Europe/Berlin", description="Revenue by region")
COLUMNS = [
    ColumnInfo("region", "string", label="Region"),
    ColumnInfo("revenue", "decimal", label="Revenue", format="currency"),
    ColumnInfo("share", "decimal", label="Share", format="percent"),
    ColumnInfo("orders", "integer", label="Orders", format="integer"),
    ColumnInfo("avg", "decimal", label="Average", format="decimal"),
    ColumnInfo("day", "date", label="Day"),
    ColumnInfo("closed_at", "datetime", label="Closed at"),
    ColumnInfo("active", "boolean", label="Active"),
]
ROW = (
    "EMEA",
    Decimal("1200.50"),
    0.125,
    42,
    Decimal("3.333"),
    date(2026, 11, 27),
    datetime(2026, 11, 27, 23, 30, tzinfo=UTC),
    True,
)


def render(tmp_path, sections, **options) -> openpyxl.Workbook:
    writer = XlsxWriter(tmp_path, timezone="Europe/Berlin", **options)
    for section, rows, truncated in sections:
        writer.begin_section(section)
        for row in rows:
            writer.write_row(row)
        writer.end_section(len(rows), truncated)
    rendered = writer.finish(META, "quarterly-sales_2026-11-28_0900")
    assert rendered.filename == "quarterly-sales_2026-11-28_0900.xlsx"
    assert rendered.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return openpyxl.load_workbook(rendered.path)


def test_cells_are_typed_with_the_catalog_number_formats(tmp_path):
    wb = render(tmp_path, [(Section("Quarterly Sales", COLUMNS), [ROW], False)])
    ws = wb["Quarterly Sales"]
    cells = {c.column_letter: c for c in ws[2]}
    assert cells["A"].value == "EMEA" and cells["A"].data_type == "s"
    assert cells["B"].value == 1200.5 and cells["B"].data_type == "n"
    assert "#,##0.00" in cells["B"].number_format
    assert cells["C"].value == 0.125 and cells["C"].number_format == "0.0%"
    assert cells["D"].value == 42 and cells["D"].number_format == "#,##0"
    assert cells["E"].number_format == "#,##0.00"
    assert cells["F"].value == datetime(2026, 11, 27) and cells["F"].number_format == "yyyy-mm-dd"
    assert cells["F"].is_date
    # An aware UTC time shows in the report's zone (Berlin is UTC+1 in November).
    assert cells["G"].value == datetime(2026, 11, 28, 0, 30) and cells["G"].is_date
    assert cells["H"].value is True and cells["H"].data_type == "b"


def test_header_is_bold_frozen_filtered_and_columns_are_sized_from_the_data(tmp_path):
    long_region = "Europe, the Middle East and Africa"
    rows = [ROW, (long_region, *ROW[1:])]
    wb = render(tmp_path, [(Section("Quarterly Sales", COLUMNS), rows, False)])
    ws = wb.active
    assert [c.value for c in ws[1]] == [c.label for c in COLUMNS]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:H3"
    assert ws.column_dimensions["A"].width >= len(long_region)
    assert ws.column_dimensions["H"].width < ws.column_dimensions["A"].width


def test_formula_like_text_stays_inert_text(tmp_path):
    attacks = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tX", "\rY", '=HYPERLINK("http://x")']
    wb = render(tmp_path, [(Section("Sheet", [ColumnInfo("=evil()")]), [(a,) for a in attacks], False)])
    ws = wb.active
    assert ws["A1"].value == "=evil()" and ws["A1"].data_type == "s"
    for row_index, attack in enumerate(attacks, start=2):
        cell = ws.cell(row=row_index, column=1)
        assert cell.value == attack.replace("\r", "\n")  # XML reads a bare CR as LF
        assert cell.data_type == "s"  # text, never a formula
        assert cell.quotePrefix  # Excel keeps it text even when edited


def test_nulls_unicode_long_text_and_control_characters(tmp_path):
    columns = [ColumnInfo("text"), ColumnInfo("number", "integer")]
    rows = [
        (None, None),
        ("مرحبا بالعالم", 1),
        ("😀 emoji", 2),
        ("中文 日本語 한국어", 3),
        ("x" * 40_000, 4),
        ("bell\x07inside", 5),
    ]
    ws = render(tmp_path, [(Section("Unicode", columns), rows, False)]).active
    assert ws["A2"].value is None and ws["B2"].value is None
    assert ws["A3"].value == "مرحبا بالعالم"
    assert ws["A4"].value == "😀 emoji"
    assert ws["A5"].value == "中文 日本語 한국어"
    assert len(ws["A6"].value) == 32_767  # Excel's cell limit
    assert ws["A7"].value == "bell\ufffdinside"
    assert ws.column_dimensions["A"].width <= 60


def test_characters_xml_cannot_hold_are_replaced_and_the_workbook_opens(tmp_path):
    columns = [ColumnInfo("text"), ColumnInfo("carriage")]
    rows = [("end\uffff of \ufffe text", "line\rbreak"), ("lone \ud800 surrogate", "crlf\r\nend")]
    ws = render(tmp_path, [(Section("Odd \uffff title", columns), rows, False)]).active
    assert ws.title.startswith("Odd") and "\uffff" not in ws.title
    assert ws["A2"].value == "end\ufffd of \ufffd text"
    assert ws["A3"].value == "lone \ufffd surrogate"
    assert ws["B2"].value == "line\nbreak"
    assert "\r" not in ws["B3"].value


def test_two_hundred_columns_and_zero_rows(tmp_path):
    columns = [ColumnInfo(f"c{i}", "integer") for i in range(200)]
    wb = render(tmp_path, [(Section("Wide", columns), [tuple(range(200))], False)])
    ws = wb.active
    assert ws.max_column == 200 and ws.cell(row=2, column=200).value == 199
    assert ws.auto_filter.ref == "A1:GR2"

    empty = render(tmp_path, [(Section("Empty", COLUMNS), [], False)]).active
    assert [c.value for c in empty[1]] == [c.label for c in COLUMNS]
    assert empty.max_row == 1


def test_rows_beyond_a_sheet_continue_on_a_new_sheet(tmp_path):
    rows = [(f"r{i}",) for i in range(7)]
    wb = render(tmp_path, [(Section("Big", [ColumnInfo("name")]), rows, False)], sheet_max_rows=4)
    assert wb.sheetnames == ["Big", "Big (2)", "Big (3)"]
    seen = []
    for ws in wb:
        assert ws["A1"].value == "name" and ws.freeze_panes == "A2"
        seen += [r[0] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert seen == [r[0] for r in rows]
    assert wb["Big"].auto_filter.ref == "A1:A4"


def test_default_sheet_limit_is_excels():
    assert EXCEL_MAX_ROWS == 1_048_576
    assert XlsxWriter.__init__.__kwdefaults__["sheet_max_rows"] == EXCEL_MAX_ROWS


def test_row_cap_note_follows_the_data(tmp_path):
    ws = render(tmp_path, [(Section("Capped", [ColumnInfo("n", "integer")]), [(1,), (2,)], True)]).active
    values = [r[0] for r in ws.iter_rows(values_only=True)]
    assert values[:3] == ["n", 1, 2]
    assert "BIAPP_MAX_REPORT_ROWS" in values[-1] and "first 2 rows" in values[-1]
    assert ws.auto_filter.ref == "A1:A3"


def test_dashboard_has_a_cover_and_one_unique_safe_sheet_per_widget(tmp_path):
    columns = [ColumnInfo("region"), ColumnInfo("revenue", "decimal", format="currency")]
    sections = [
        (Section("Revenue: by [region]?", columns, chart="bar", filters=("region ne APAC",)), [("EMEA", 1)], False),
        (Section("revenue: BY [region]?", columns, chart="pie"), [("EMEA", 1), ("APAC", 2)], True),
        (Section("=A very long widget title that Excel would refuse", columns), [], False),
    ]
    wb = render(tmp_path, sections, cover=True)
    assert wb.sheetnames == [
        "Summary",
        "Revenue by region",
        "revenue BY region (2)",
        "=A very long widget title that",
        "Revenue by region chart data",  # what the native charts read, after the data
        "revenue BY region chart dat (2)",
    ]
    assert all(len(name) <= 31 for name in wb.sheetnames)
    cover = [list(r) for r in wb["Summary"].iter_rows(values_only=True)]
    assert cover[0][0] == "Quarterly Sales"
    assert ["Run time", "2026-11-28 09:00 CET"] == cover[2][:2]
    assert ["Time zone", "Europe/Berlin"] == cover[3][:2]
    table = cover[cover.index(["Section", "Sheets", "Rows", "Filters applied", "Note"]) + 1 :]
    assert [r[:4] for r in table] == [
        ["Revenue: by [region]?", "Revenue by region, Revenue by region chart data", 1, "region ne APAC"],
        ["revenue: BY [region]?", "revenue BY region (2), revenue BY region chart dat (2)", 2, "none"],
        ["=A very long widget title that Excel would refuse", "=A very long widget title that", 0, "none"],
    ]
    assert "BIAPP_MAX_REPORT_ROWS" in table[1][4]
    assert wb["Summary"]["A9"].quotePrefix  # the user's "=..." title stays text on the cover too


@pytest.mark.parametrize(
    ("title", "expected"),
    [("a/b\\c*d?e:f[g]h", "a b c d e f g h"), ("   ", "Sheet"), ("History", "Sheet"), ("x" * 40, "x" * 31)],
)
def test_sheet_names_follow_excels_rules(title, expected):
    assert sheet_name(title, set()) == expected
