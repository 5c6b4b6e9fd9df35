"""Files that look made by hand: a Berlin report's numbers in German with euros, native Excel charts, a
cover with filters in words, and a dashboard widget's heading on the same PDF page as its chart."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import openpyxl
from pypdf import PdfReader

from services.renderer.summary import ChartPlan, SummaryCollector
from services.renderer.writers import RenderMeta, Section
from services.renderer.writers.pdf_writer import PdfWriter
from services.renderer.writers.xlsx_writer import XlsxWriter
from shared.query.columns import ColumnInfo

META = RenderMeta("Umsatz Berlin", "2026-11-28 09:00 CET", "Europe/Berlin")
BY_REGION = [
    ColumnInfo("region", label="Region"),
    ColumnInfo("revenue", "decimal", label="Revenue", format="currency:EUR"),
    ColumnInfo("orders", "integer", label="Orders", format="integer"),
]
REGIONS = [("Nord", Decimal("217399.17"), 812), ("Süd", Decimal("180250.50"), 640), ("Ost", Decimal("61022.00"), 233)]
DAILY = [ColumnInfo("day", "date", label="Day"), ColumnInfo("region", label="Region"), BY_REGION[1]]
# newest first, as an ORDER BY day DESC query returns them
DAYS = [(date(2026, 11, 27) - timedelta(days=n), r, Decimal(1000 + n)) for n in range(30) for r in ("Nord", "Süd")]
FILTERS = ("Order date: letzte 90 Tage",)


def sections():
    return [
        (
            Section("Umsatz nach Region", BY_REGION, chart="bar", filters=FILTERS, plan=ChartPlan("bar", "region")),
            REGIONS,
        ),
        (
            Section("Täglicher Umsatz", DAILY, chart="line", plan=ChartPlan("line", "day", "region", ("revenue",))),
            DAYS,
        ),
    ]


def feed(writer):
    for section, rows in sections():
        writer.begin_section(section)
        for row in rows:
            writer.write_row(row)
        writer.end_section(len(rows), False)


def squash(text: str) -> str:
    return re.sub(r"[\s\x00]+", "", text)


def test_xlsx_numbers_follow_the_catalog_format_and_locale_with_native_charts(tmp_path):
    writer = XlsxWriter(tmp_path, timezone="Europe/Berlin", cover=True, locale="de-DE")
    feed(writer)
    wb = openpyxl.load_workbook(writer.finish(META, "umsatz").path)
    assert wb.sheetnames[0] == "Übersicht", "the cover sheet speaks the report's language"
    ws = wb["Umsatz nach Region"]
    revenue = ws["B2"]
    assert revenue.value == 217399.17 and "€" in revenue.number_format and "$" not in revenue.number_format
    assert ws["C2"].number_format == "#,##0"
    assert len(ws._charts) == 2, "native Excel charts beside the data: Revenue and Orders each on its own axis"
    daily = wb["Täglicher Umsatz"]
    assert daily["A2"].is_date, "dates stay dates"
    assert len(daily._charts) == 1
    cover = [list(r) for r in wb["Übersicht"].iter_rows(values_only=True)]
    assert any("Order date: letzte 90 Tage" in str(cell) for row in cover for cell in row)


def test_pdf_numbers_read_german_with_euros_and_each_heading_shares_a_page_with_its_chart(tmp_path):
    writer = PdfWriter(tmp_path, timezone="Europe/Berlin", locale="de-DE", full_data_in=("xlsx",))
    feed(writer)
    html = writer.html(META)
    assert 'lang="de"' in html
    reader = PdfReader(writer.finish(META, "umsatz").path)
    pages = [squash(page.extract_text()) for page in reader.pages]
    text = "".join(pages)
    assert "217.399,17€" in text and "$" not in text
    assert "Runtime" not in text, "boilerplate in German"
    assert "OrderDate:letzte90Tage".lower() in text.lower()
    for title in ("UmsatznachRegion", "TäglicherUmsatz"):
        [page] = [n for n, page in enumerate(reader.pages) if title in squash(page.extract_text())][:1]
        assert "/XObject" in reader.pages[page]["/Resources"], f"{title}'s chart is on the page of its heading"


def test_the_summary_keeps_every_widget_with_its_true_row_count_formatted_rows_and_chart_specs():
    collector = SummaryCollector(locale="de-DE", timezone="Europe/Berlin")
    for section, rows in sections():
        collector.begin_section(section.title, section.columns, section.plan, section.filters)
        for row in rows:
            collector.write_row(row)
        collector.end_section(len(rows), False)
    summary = collector.summary()
    first, daily = summary["sections"]
    assert [first["title"], daily["title"]] == ["Umsatz nach Region", "Täglicher Umsatz"]
    assert (first["row_count"], daily["row_count"]) == (3, 60)
    assert len(daily["rows"]) == 20
    assert first["rows"][0][1].replace("\xa0", " ") == "217.399,17 €"
    assert first["align"] == ["left", "right", "right"]
    assert first["filters"] == list(FILTERS)
    assert len(first["charts"]) == 2, "Revenue and Orders differ by magnitude: one chart each"
    [line] = daily["charts"]
    assert line["encoding"]["color"]["field"] == "series", "one line per region"
    assert daily["chart_alt"]


def test_untyped_raw_sql_amounts_read_with_the_same_decimals_in_every_file(tmp_path):
    columns = [ColumnInfo("region"), ColumnInfo("amount")]  # raw SQL on SQLite: no declared types
    rows = [("EMEA", 1069.4), ("APAC", 3804.0)]
    pdf = PdfWriter(tmp_path, timezone="UTC", locale="en-US")
    xlsx = XlsxWriter(tmp_path, timezone="UTC", locale="en-US")
    collector = SummaryCollector(locale="en-US", timezone="UTC")
    for writer in (pdf, xlsx):
        writer.begin_section(Section("Raw", columns))
    collector.begin_section("Raw", columns, ChartPlan(), ())
    for row in rows:
        for writer in (pdf, xlsx, collector):
            writer.write_row(row)
    for writer in (pdf, xlsx, collector):
        writer.end_section(2, False)
    text = squash("".join(p.extract_text() for p in PdfReader(pdf.finish(META, "raw").path).pages))
    assert "EMEA1,069.40" in text and "APAC3,804.00" in text
    sheet = openpyxl.load_workbook(xlsx.finish(META, "raw").path)["Raw"]
    assert sheet["B2"].number_format == sheet["B3"].number_format == "#,##0.00"
    [section] = collector.summary()["sections"]
    assert [r[1] for r in section["rows"]] == ["1,069.40", "3,804.00"] and section["align"][1] == "right"
