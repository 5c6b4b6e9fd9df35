"""The PDF writer, read back with pypdf.

pypdf's text extraction spaces out (or NUL-separates) glyphs of WeasyPrint's fonts, so
text checks compare with whitespace removed.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from services.renderer.writers import RenderMeta, Section
from services.renderer.writers.pdf_writer import MAX_COLUMNS, PdfWriter, safe_url_fetcher
from shared.query.engine import ColumnInfo

META = RenderMeta("Quarterly Sales", "2026-11-28 09:00 CET", "Europe/Berlin", description="Revenue by region")
COLUMNS = [
    ColumnInfo("region", label="Region"),
    ColumnInfo("revenue", "decimal", label="Revenue", format="currency"),
    ColumnInfo("share", "decimal", label="Share", format="percent"),
    ColumnInfo("closed_at", "datetime", label="Closed at"),
]


def squash(text: str) -> str:
    return re.sub(r"[\s\x00]+", "", text)


def render(tmp_path, sections, **options) -> tuple[PdfReader, PdfWriter]:
    options.setdefault("full_data_in", ("xlsx", "csv"))
    writer = PdfWriter(tmp_path, timezone="Europe/Berlin", **options)
    for section, rows, count, truncated in sections:
        writer.begin_section(section)
        for row in rows:
            writer.write_row(row)
        writer.end_section(count, truncated)
    rendered = writer.finish(META, "quarterly-sales_2026-11-28_0900")
    assert rendered.filename == "quarterly-sales_2026-11-28_0900.pdf"
    assert rendered.content_type == "application/pdf"
    return PdfReader(rendered.path), writer


def rows(n: int) -> list[tuple]:
    return [
        (f"region-{i}", Decimal(i) * 1000 + Decimal("0.5"), i / 100, datetime(2026, 11, 27, 23, 30, tzinfo=UTC))
        for i in range(n)
    ]


def test_first_page_layout(tmp_path):
    reader, _ = render(tmp_path, [(Section("Quarterly Sales", COLUMNS), rows(3), 3, False)])
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) > float(box.height)  # landscape
    assert round(float(box.width) / 72 * 25.4) == 297  # A4
    text = squash(reader.pages[0].extract_text())
    expected = [
        "QuarterlySales",
        "Revenuebyregion",
        "Runtime:2026-11-2809:00CET(Europe/Berlin)",
        "RegionRevenueShareClosedat",
        "region-0$0.500.0%Nov28,2026,12:30:00AMCET",  # currency, percent and times in the report's locale
        "region-1$1,000.501.0%Nov28,2026,12:30:00AMCET",
        "region-2$2,000.502.0%Nov28,2026,12:30:00AMCET",
        "QuarterlySalesPage1of1",
    ]
    position = 0
    for piece in expected:  # in this order on the page
        found = text.find(piece, position)
        assert found >= 0, f"{piece!r} not found after position {position} in {text!r}"
        position = found + len(piece)


def test_only_the_first_rows_are_laid_out_with_a_note_and_the_header_repeats(tmp_path):
    reader, _ = render(tmp_path, [(Section("Quarterly Sales", COLUMNS), rows(200), 200_000, False)], max_rows=120)
    pages = [squash(p.extract_text()) for p in reader.pages]
    assert len(pages) >= 3
    assert "Showingthefirst120of200,000rows.ThefulldataisintheXLSX/CSVattachment." in pages[0]
    assert all("RegionRevenueShareClosedat" in page for page in pages)  # repeated header
    assert all(f"Page{n}of{len(pages)}" in page for n, page in enumerate(pages, start=1))
    everything = "".join(pages)
    assert "region-119" in everything and "region-120" not in everything


def test_row_cap_and_pdf_only_notes(tmp_path):
    reader, _ = render(tmp_path, [(Section("Quarterly Sales", COLUMNS), rows(2), 2, True)], full_data_in=())
    text = squash(reader.pages[0].extract_text())
    assert "cutatthereportrowlimitof2rows(BIAPP_MAX_REPORT_ROWS)" in text


def test_data_and_names_are_escaped_not_interpreted(tmp_path):
    evil = '<script>alert(1)</script><img src="file:///etc/passwd"><b>bold</b>'
    section = Section("<h1>Widget</h1>", [ColumnInfo("<i>col</i>")])
    reader, writer = render(tmp_path, [(section, [(evil,)], 1, False), (Section("Two", COLUMNS), [], 0, False)])
    html = writer.html(META)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<img src="file' not in html
    text = squash("".join(p.extract_text() for p in reader.pages))
    assert squash(evil) in text  # shown literally
    assert "<h1>Widget</h1>" in text and "<i>col</i>" in text


def test_fetcher_refuses_files_and_network():
    fetcher = safe_url_fetcher()
    for url in ("file:///etc/passwd", "http://127.0.0.1:1/x.png", "https://example.com/x.css", "ftp://h/x"):
        with pytest.raises(ValueError, match="disallowed protocol"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"


def test_unicode_nulls_long_text_wide_and_empty(tmp_path):
    columns = [ColumnInfo(f"c{i}") for i in range(200)]
    values = ["שלום עולם", "😀", "中文", None, "word " * 2000] + ["x"] * 195
    reader, _ = render(
        tmp_path,
        [(Section("Wide", columns), [tuple(values)], 1, False), (Section("Empty", COLUMNS), [], 0, False)],
    )
    text = squash("".join(p.extract_text() for p in reader.pages))
    assert f"Showing{MAX_COLUMNS}of200columns.AllcolumnsareintheXLSX/CSVattachment." in text
    assert "wordword" in text and "Norows." in text
    assert len(reader.pages) <= 3  # long text is cut, not laid out over pages


def test_dashboard_widgets_are_sections_with_svg_charts(tmp_path):
    chart_columns = [ColumnInfo("region", label="Region"), ColumnInfo("revenue", "decimal", label="Revenue")]
    data = [("EMEA", Decimal(1200)), ("APAC", Decimal(990)), ("AMER", Decimal(1500))]
    sections = [
        (Section("By region", chart_columns, chart="bar", filters=("region ne LATAM",)), data, 3, False),
        (Section("Share", chart_columns, chart="pie"), data, 3, False),
        (Section("Trend", chart_columns, chart="line"), data, 3, False),
        (Section("Plain", chart_columns, chart="table"), data, 3, False),
    ]
    reader, writer = render(tmp_path, sections)
    html = writer.html(META)
    assert html.count('src="data:image/svg+xml;base64,') == 3
    text = squash("".join(p.extract_text() for p in reader.pages))
    for title in ("Filtersapplied", "Byregion:regionneLATAM", "Share", "Trend", "Plain"):
        assert title in text
    first = reader.pages[0]["/Resources"]
    assert len(first["/XObject"]) > 0  # the bar chart is drawn as vector graphics on page 1
    plain, _ = render(tmp_path, [sections[-1]])
    assert len(plain.pages[0]["/Resources"]["/XObject"]) == 0  # a table widget has no chart


def test_charts_are_svg_from_the_vega_lite_spec_with_no_script(tmp_path):
    columns = [ColumnInfo("region"), ColumnInfo("revenue", "decimal")]
    section = Section("By region", columns, chart="bar")
    _, writer = render(tmp_path, [(section, [("EMEA", Decimal(1)), ("APAC", None)], 2, False)])
    [uri] = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', writer.html(META))
    svg = base64.b64decode(uri).decode()
    assert svg.lstrip().startswith("<svg") and "<script" not in svg and "EMEA" in svg
    _, nothing = render(tmp_path, [(Section("Words", [ColumnInfo("only text")], chart="bar"), [("a",)], 1, False)])
    assert "data:image/svg" not in nothing.html(META)


def embedded_fonts(page) -> set[str]:
    """BaseFont names without the subset prefix, e.g. 'Noto-Sans-CJK-SC'."""
    fonts = page["/Resources"]["/Font"]
    return {str(fonts[name].get_object()["/BaseFont"]).split("+", 1)[-1] for name in fonts}


def test_cjk_rtl_and_emoji_are_drawn_with_real_glyphs(tmp_path):
    # Installed by scripts/ensure_system_packages.sh (make install) and the Docker image.
    scripts = {
        "Chinese": "中文报表",
        "Japanese": "日本語のレポート",
        "Korean": "한국어보고서",
        "Arabic": "مرحبابالعالم",
        "Hebrew": "שלוםעולם",
        "Emoji": "🚀🎉",
        "Number": "1,200#3",
    }
    section = Section("Scripts", [ColumnInfo(name.lower(), label=name) for name in scripts])
    reader, _ = render(tmp_path, [(section, [tuple(scripts.values())], 1, False)])
    page = reader.pages[0]
    fonts = embedded_fonts(page)
    assert any("CJK" in font for font in fonts), f"no CJK font embedded, only {fonts}"
    assert any("Emoji" in font for font in fonts), f"no emoji font embedded, only {fonts}"
    assert any(font.startswith("DejaVu-Sans") for font in fonts)  # Latin, Arabic and Hebrew
    text = squash(page.extract_text())
    for name, value in scripts.items():
        assert value in text, f"{name} {value!r} not in {text!r}"
    # Colour emoji are bitmaps: one per emoji, none for digits or '#' (which are emoji characters too).
    assert len(page["/Resources"]["/XObject"]) == 2


def test_the_page_footer_uses_the_body_fonts(tmp_path):
    reader, _ = render(tmp_path, [(Section("売上", [ColumnInfo("n", "integer")]), [(1,)], 1, False)])
    fonts = {str(font["/BaseFont"]) for page in reader.pages for font in page["/Resources"]["/Font"].values()}
    assert not any("Serif" in name for name in fonts), fonts
