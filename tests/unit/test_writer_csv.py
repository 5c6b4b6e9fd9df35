"""The CSV writer, read back with the csv module."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal

from services.renderer.writers import RenderMeta, Section
from services.renderer.writers.csv_writer import CsvWriter
from shared.query.engine import ColumnInfo

META = RenderMeta("Quarterly Sales", "2026-11-28 09:00 CET", "Europe/Berlin")
COLUMNS = [ColumnInfo("name", label="Name"), ColumnInfo("amount", "decimal"), ColumnInfo("day", "date")]


def render(tmp_path, sections, **options):
    writer = CsvWriter(tmp_path, timezone="Europe/Berlin", **options)
    for section, rows in sections:
        writer.begin_section(section)
        for row in rows:
            writer.write_row(row)
        writer.end_section(len(rows), False)
    return writer.finish(META, "quarterly-sales_2026-11-28_0900")


def read(path, encoding="utf-8") -> list[list[str]]:
    with open(path, newline="", encoding=encoding) as handle:
        return list(csv.reader(handle))


def test_rfc4180_quoting_iso_dates_and_nulls(tmp_path):
    rows = [
        ('He said "hi", then left', Decimal("1200.50"), date(2026, 11, 27)),
        ("two\nlines", Decimal("1E+3"), None),
        (None, 0.5, datetime(2026, 11, 27, 23, 30, tzinfo=UTC)),
        ("flag", True, False),
    ]
    rendered = render(tmp_path, [(Section("Sales", COLUMNS), rows)])
    assert rendered.filename == "quarterly-sales_2026-11-28_0900.csv"
    assert rendered.content_type == "text/csv; charset=utf-8"
    raw = rendered.path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert b'"He said ""hi"", then left"' in raw and b"\r\n" in raw
    assert read(rendered.path) == [
        ["Name", "amount", "day"],
        ['He said "hi", then left', "1200.50", "2026-11-27"],
        ["two\nlines", "1000", ""],
        ["", "0.5", "2026-11-28 00:30:00+01:00"],  # in the report's zone, offset kept
        ["flag", "True", "False"],
    ]


def test_bom_is_per_report(tmp_path):
    rendered = render(tmp_path, [(Section("Sales", COLUMNS), [("Zoë", 1, None)])], bom=True)
    assert rendered.path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read(rendered.path, "utf-8-sig")[1][0] == "Zoë"


def test_formula_injection_is_neutralised_in_cells_and_header(tmp_path):
    attacks = ["=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\ry", "=cmd|' /C calc'!A0"]
    section = Section("Sales", [ColumnInfo("=header")])
    rendered = render(tmp_path, [(section, [(a,) for a in attacks] + [(-5,), ("safe",)])])
    rows = read(rendered.path)
    assert rows[0] == ["'=header"]
    assert [r[0] for r in rows[1:]] == ["'" + a for a in attacks] + ["-5", "safe"]


def test_unicode_long_text_wide_and_empty(tmp_path):
    wide = [ColumnInfo(f"c{i}") for i in range(200)]
    text = ["مرحبا", "😀", "中文", "x" * 100_000]
    rendered = render(tmp_path, [(Section("Wide", wide), [tuple(text * 50)])])
    rows = read(rendered.path)
    assert len(rows[0]) == 200 and rows[1][:4] == text

    empty = render(tmp_path, [(Section("Empty", COLUMNS), [])])
    assert read(empty.path) == [["Name", "amount", "day"]]


def test_dashboard_sections_are_zipped_one_file_per_widget(tmp_path):
    sections = [
        (Section("Revenue / region", COLUMNS), [("a", 1, None)]),
        (Section("Revenue / region", COLUMNS), [("b", 2, None)]),
        (Section("<script>", COLUMNS), []),
    ]
    rendered = render(tmp_path, sections)
    assert rendered.filename == "quarterly-sales_2026-11-28_0900.csv.zip"
    assert rendered.content_type == "application/zip"
    with zipfile.ZipFile(rendered.path) as archive:
        names = archive.namelist()
        assert names == ["01-revenue-region.csv", "02-revenue-region.csv", "03-script.csv"]
        second = list(csv.reader(io.StringIO(archive.read(names[1]).decode("utf-8"))))
    assert second == [["Name", "amount", "day"], ["b", "2", ""]]
