"""Renderer benchmark: our writers against the bare libraries on the same rows, side by side.

    .venv/bin/python bench/render.py [--rows 50000] [--repeat 5] [--baseline REV]
                                     [--pdf-variants] [--memory-sizes 10000,100000,1000000]

1. rows/s of XlsxWriter and CsvWriter against two bare references each (see `bare_*` below):
   "floor": the library fed the rows as they are, with only what it needs to accept them at all
   (aware datetimes made naive for openpyxl), which is NOT the same file as ours;
   "equivalent": the library plus the plainest loop that writes the same file as ours (same
   bytes for CSV, same values and number formats for XLSX; checked before timing).
   With --baseline REV the writers as they were at git revision REV run in the same loop.
2. seconds for a 1,000-row PDF: our layout vs a naive one-table WeasyPrint render; with
   --pdf-variants, our document with one layout choice changed at a time.
3. peak memory (ru_maxrss of a fresh process) writing XLSX + CSV for growing row counts.

The machine is shared, so every figure is the median of --repeat interleaved runs (each
contender runs once per round, in rotating order, so a noisy neighbour hurts all of them
alike), timed in CPU seconds of the process rather than wall time.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openpyxl  # noqa: E402
from openpyxl import Workbook  # noqa: E402
from openpyxl.cell import WriteOnlyCell  # noqa: E402
from openpyxl.styles import Font  # noqa: E402

from services.renderer.summary import ChartPlan  # noqa: E402
from services.renderer.writers import RenderMeta, Section  # noqa: E402
from services.renderer.writers.csv_writer import CsvWriter  # noqa: E402
from services.renderer.writers.formatting import EXCEL_DATE, EXCEL_DATETIME  # noqa: E402
from services.renderer.writers.pdf_writer import PdfWriter, safe_url_fetcher  # noqa: E402
from services.renderer.writers.xlsx_writer import XlsxWriter  # noqa: E402
from shared import charts  # noqa: E402
from shared.formats import excel_format  # noqa: E402
from shared.query.engine import ColumnInfo  # noqa: E402

ZONE_NAME = "Europe/Berlin"
ZONE = ZoneInfo(ZONE_NAME)
TRIGGERS = tuple("=+-@\t\r")
COLUMNS = [
    ColumnInfo("order_id", "integer"),
    ColumnInfo("customer", "string", label="Customer"),
    ColumnInfo("amount", "decimal", label="Amount", format="currency"),
    ColumnInfo("share", "decimal", label="Share", format="percent"),
    ColumnInfo("day", "date", label="Day"),
    ColumnInfo("closed_at", "datetime", label="Closed at"),
    ColumnInfo("paid", "boolean", label="Paid"),
]
META = RenderMeta("Benchmark", "2026-11-28 09:00 CET", ZONE_NAME)


def make_rows(n: int):
    """What PostgreSQL hands over: Decimal numerics, dates, aware timestamps (UTC), NULLs, text."""
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    for i in range(n):
        yield (
            i,
            None if i % 13 == 0 else f"customer {i % 5000} with a name",
            None if i % 17 == 0 else Decimal(i % 100_000) / 4,
            Decimal(i % 100) / 100,
            date(2026, 1, 1) + timedelta(days=i % 365),
            start + timedelta(seconds=i),
            i % 2 == 0,
        )


PLAIN_COLUMNS = [
    ColumnInfo("order_id", "integer"),
    ColumnInfo("customer"),
    ColumnInfo("share", "decimal"),
    ColumnInfo("day", "date"),
    ColumnInfo("paid", "boolean"),
]


def make_plain_rows(n: int):
    """Rows without Decimal or datetime values (what SQLite hands over)."""
    for i in range(n):
        yield (
            i,
            f"customer {i % 5000} with a name",
            (i % 100) / 100,
            date(2026, 1, 1) + timedelta(days=i % 365),
            i % 2 == 0,
        )


def timed(fn) -> float:
    """CPU seconds of this process: steadier than wall time on a machine other jobs share."""
    started = time.process_time()
    fn()
    return time.process_time() - started


# --- contenders ---------------------------------------------------------------------


def ours(writer_cls, rows, workdir, columns=COLUMNS, **options):
    def run():
        writer = writer_cls(workdir, **options)
        writer.begin_section(Section("Benchmark", columns))
        for row in rows:
            writer.write_row(row)
        writer.end_section(len(rows), False)
        return writer.finish(META, "benchmark").path

    return run


def bare_xlsx_floor(rows, workdir, columns=COLUMNS):
    """openpyxl write-only fed the rows as they are. Aware datetimes must be made naive or
    openpyxl refuses them; nothing else is done (no catalog formats, `=…` text would become
    a formula, no header style, widths or filter)."""

    def run():
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Benchmark")
        ws.append([c.name for c in columns])
        for row in rows:
            ws.append([v.astimezone(ZONE).replace(tzinfo=None) if type(v) is datetime and v.tzinfo else v for v in row])
        wb.save(workdir / "bare.xlsx")
        return workdir / "bare.xlsx"

    return run


def bare_xlsx_equivalent(rows, workdir, columns=COLUMNS):
    """The same workbook as ours, written the plain way: one new WriteOnlyCell per formatted value."""
    formats = [excel_format(c.format, "en-US", column_type=c.type) for c in columns]
    bold = Font(bold=True)

    def cell(ws, index, value):
        kind = type(value)
        if kind is datetime:
            c = WriteOnlyCell(ws, value=value.astimezone(ZONE).replace(tzinfo=None) if value.tzinfo else value)
            c.number_format = EXCEL_DATETIME
            return c
        if kind is date:
            c = WriteOnlyCell(ws, value=value)
            c.number_format = EXCEL_DATE
            return c
        if kind in (int, float, Decimal) and formats[index]:
            c = WriteOnlyCell(ws, value=value)
            c.number_format = formats[index]
            return c
        if kind is str and value.startswith(TRIGGERS):
            c = WriteOnlyCell(ws, value=value)
            c.data_type, c.quotePrefix = "s", True
            return c
        return value

    def run():
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Benchmark")
        ws.freeze_panes = "A2"
        header = []
        for c in columns:
            h = WriteOnlyCell(ws, value=c.label or c.name)
            h.font = bold
            header.append(h)
        ws.append(header)
        for row in rows:
            ws.append([cell(ws, i, v) for i, v in enumerate(row)])
        wb.save(workdir / "bare.xlsx")
        return workdir / "bare.xlsx"

    return run


def bare_csv_floor(rows, workdir, columns=COLUMNS):
    """csv.writer fed the rows as they are: aware datetimes stay in UTC, text is not neutralised."""

    def run():
        with open(workdir / "bare.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow([c.label or c.name for c in columns])
            for row in rows:
                writer.writerow(row)
        return workdir / "bare.csv"

    return run


def bare_csv_equivalent(rows, workdir, columns=COLUMNS):
    """csv.writer plus the plainest loop giving the same bytes: datetimes in the report's zone,
    Decimals without exponent, formula-like text neutralised."""

    def run():
        with open(workdir / "bare.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow([c.label or c.name for c in columns])
            for row in rows:
                writer.writerow(
                    [
                        (v.astimezone(ZONE) if v.tzinfo else v)
                        if type(v) is datetime
                        else format(v, "f")
                        if type(v) is Decimal
                        else ("'" + v if v.startswith(TRIGGERS) else v)
                        if type(v) is str
                        else v
                        for v in row
                    ]
                )
        return workdir / "bare.csv"

    return run


def naive_pdf(rows, workdir):
    """One plain table, automatic layout, no widths: what a first attempt looks like."""
    from weasyprint import HTML

    def run():
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        head = "".join(f"<th>{c.name}</th>" for c in COLUMNS)
        document = (
            "<html><head><style>@page { size: A4 landscape }</style></head><body>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>"
        )
        HTML(string=document, url_fetcher=safe_url_fetcher()).write_pdf(workdir / "naive.pdf")

    return run


# --- checks: the bare "equivalent" contenders write what ours writes -----------------


def same_csv(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), "bare CSV equivalent differs from ours"


def same_xlsx(a: Path, b: Path) -> None:
    left, right = openpyxl.load_workbook(a).active, openpyxl.load_workbook(b).active
    for ra, rb in zip(left.iter_rows(min_row=2), right.iter_rows(min_row=2), strict=True):
        for ca, cb in zip(ra, rb, strict=True):
            assert (ca.value, ca.data_type) == (cb.value, cb.data_type), (ca.coordinate, ca.value, cb.value)
            if ca.value is not None:
                assert ca.number_format == cb.number_format, (ca.coordinate, ca.number_format, cb.number_format)


# --- the writers as they were at another revision -------------------------------------

WRITER_FILES = ("__init__.py", "charts.py", "csv_writer.py", "formatting.py", "pdf_writer.py", "xlsx_writer.py")
WRITER_DATA = ("report.css", "report.html.j2")


def load_baseline(rev: str, into: Path):
    """Import services/renderer/writers as of `rev` under another package name, next to the current one."""
    package = into / "baseline_writers"
    package.mkdir()
    for name in WRITER_FILES + WRITER_DATA:
        try:
            text = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:services/renderer/writers/{name}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except subprocess.CalledProcessError:
            continue
        (package / name).write_text(text.replace("services.renderer.writers", "baseline_writers"), encoding="utf-8")
    sys.path.insert(0, str(into))
    return (
        importlib.import_module("baseline_writers.csv_writer").CsvWriter,
        importlib.import_module("baseline_writers.xlsx_writer").XlsxWriter,
        importlib.import_module("baseline_writers.pdf_writer").PdfWriter,
    )


def medians(contenders: dict, repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for round_ in range(repeat):
        for name in order[round_ % len(order) :] + order[: round_ % len(order)]:  # rotate who goes first
            times[name].append(timed(contenders[name]))
    return {name: statistics.median(ts) for name, ts in times.items()}


# --- PDF layout variants --------------------------------------------------------------

# Each variant changes one thing in our stylesheet (report.css) or markup, all else equal.
PDF_VARIANTS = {
    "as shipped": lambda css, doc: (css, doc),
    "table-layout: auto": lambda css, doc: (css.replace("table-layout: fixed;", "table-layout: auto;"), doc),
    "+ per-cell row borders": lambda css, doc: (
        css.replace("border-spacing: 0;", "border-collapse: collapse;") + "td { border-bottom: 0.2pt solid #cfd6de; }",
        doc,
    ),
    "no break-inside: avoid": lambda css, doc: (css.replace("tr { break-inside: avoid; }", ""), doc),
    "no overflow-wrap": lambda css, doc: (css.replace("th, td { overflow-wrap: anywhere; }", ""), doc),
    "no cell padding": lambda css, doc: (css.replace("padding: 0.8mm 1.2mm;", "padding: 0;"), doc),
    "no vertical-align: top": lambda css, doc: (css.replace(" vertical-align: top;", ""), doc),
    "no page N of M": lambda css, doc: (css.replace('"Page " counter(page) " of " counter(pages)', '""'), doc),
    "no class on cells": lambda css, doc: (css, doc.replace('<td class="n">', "<td>")),
}


def pdf_variant_runs(rows, workdir, writer_cls=PdfWriter) -> dict:
    from weasyprint import HTML

    writer = writer_cls(workdir, timezone=ZONE_NAME, max_rows=len(rows))
    writer.begin_section(Section("Benchmark", COLUMNS))
    for row in rows:
        writer.write_row(row)
    writer.end_section(len(rows), False)
    document = writer.html(META)
    module = sys.modules[writer_cls.__module__]
    runs = {}
    for name, change in PDF_VARIANTS.items():
        css, doc = change(module.CSS, document)
        if name != "as shipped" and (css, doc) == (module.CSS, document):
            continue  # the choice is not in this stylesheet
        doc = doc.replace(module.CSS, css)

        def run(doc=doc):
            HTML(string=doc, url_fetcher=safe_url_fetcher(), base_url=None).write_pdf(workdir / "variant.pdf")

        runs[name] = run
    return runs


# --- memory ---------------------------------------------------------------------------


def memory_child(rows: int) -> None:
    """Run in a fresh process: write XLSX + CSV from a generator, print peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        writers = [XlsxWriter(workdir, timezone=ZONE_NAME), CsvWriter(workdir, timezone=ZONE_NAME)]
        for writer in writers:
            writer.begin_section(Section("Benchmark", COLUMNS))
        for row in make_rows(rows):
            for writer in writers:
                writer.write_row(row)
        for writer in writers:
            writer.end_section(rows, False)
            writer.finish(META, "benchmark")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} CPUs (nproc), {model}, Python {platform.python_version()}, load average {load:.1f}"


def throughput(args, workdir: Path, baseline) -> None:
    opts = {"timezone": ZONE_NAME}
    for label, make, columns in (
        ("typed rows (int, text|NULL, Decimal|NULL, Decimal, date, aware datetime, bool)", make_rows, COLUMNS),
        ("plain rows (int, text, float, date, bool)", make_plain_rows, PLAIN_COLUMNS),
    ):
        data = list(make(args.rows))
        print(f"\nthroughput, {label}: {args.rows:,} rows x {len(columns)} columns, median of {args.repeat}")
        for fmt, our_cls, floor, equivalent, same, old_cls in (
            ("xlsx", XlsxWriter, bare_xlsx_floor, bare_xlsx_equivalent, same_xlsx, baseline and baseline[1]),
            ("csv", CsvWriter, bare_csv_floor, bare_csv_equivalent, same_csv, baseline and baseline[0]),
        ):
            check = data[:2000]
            same(ours(our_cls, check, workdir, columns, **opts)(), equivalent(check, workdir, columns)())
            contenders = {"ours": ours(our_cls, data, workdir, columns, **opts)}
            if old_cls:
                contenders["before"] = ours(old_cls, data, workdir, columns, **opts)
            contenders["bare equivalent"] = equivalent(data, workdir, columns)
            contenders["bare floor"] = floor(data, workdir, columns)
            t = medians(contenders, args.repeat)
            print(f"  {fmt:<5}" + "".join(f"{name:>18}" for name in t) + "   (rows per CPU second)")
            print("       " + "".join(f"{args.rows / s:>18,.0f}" for s in t.values()))
            for side in ("ours", "before") if old_cls else ("ours",):
                equivalent_ratio, floor_ratio = t["bare equivalent"] / t[side], t["bare floor"] / t[side]
                print(f"       {side}/bare equivalent {equivalent_ratio:.0%}, {side}/bare floor {floor_ratio:.0%}")


def pdf(args, workdir: Path, baseline) -> None:
    pdf_rows = list(make_rows(1000))
    print(f"\nPDF, 1,000 rows, median of {args.pdf_repeat}")
    contenders = {"ours": ours(PdfWriter, pdf_rows, workdir, timezone=ZONE_NAME, max_rows=1000)}
    if baseline:
        contenders["before"] = ours(baseline[2], pdf_rows, workdir, timezone=ZONE_NAME, max_rows=1000)
    contenders["naive one-table render"] = naive_pdf(pdf_rows, workdir)
    t = medians(contenders, args.pdf_repeat)
    for name, seconds in t.items():
        print(f"  {name:<26}{seconds:>7.2f} CPU s   vs naive {seconds / t['naive one-table render']:.0%}")
    if args.pdf_variants:
        print(f"\nPDF layout choices, 1,000 rows, one change at a time to our document, median of {args.pdf_repeat}")
        runs = pdf_variant_runs(pdf_rows, workdir)
        t = medians(runs, args.pdf_repeat)
        for name, seconds in t.items():
            print(f"  {name:<26}{seconds:>7.2f} CPU s   vs as shipped {seconds / t['as shipped']:.0%}")


CHART_COLUMNS = [
    ColumnInfo("day", "date", label="Day"),
    ColumnInfo("region", label="Region"),
    ColumnInfo("revenue", "decimal", label="Revenue", format="currency:EUR"),
    ColumnInfo("orders", "integer", label="Orders"),
]


def chart_rows(n: int = 360) -> list[tuple]:
    start = date(2026, 1, 1)
    regions = ("EMEA", "APAC", "LATAM", "North America")
    return [
        (start + timedelta(days=i // 4), regions[i % 4], Decimal(1000 + (i * 37) % 900), 10 + i % 7) for i in range(n)
    ]


def chart_cost(args, workdir: Path) -> None:
    """What charts add: a PDF of four charted widgets against the same four as tables, and one chart alone."""
    rows = chart_rows()
    plans = [
        ChartPlan("line", "day", "region", ("revenue",)),
        ChartPlan("bar", "region", None, ("revenue", "orders")),
        ChartPlan("area", "day", "region", ("orders",)),
        ChartPlan("donut", "region", None, ("revenue",)),
    ]

    def dashboard(charted: bool):
        def run():
            writer = PdfWriter(workdir, timezone=ZONE_NAME, max_rows=50, locale="de-DE")
            for n, plan in enumerate(plans):
                kind = plan.kind if charted else "table"
                writer.begin_section(Section(f"Widget {n}", CHART_COLUMNS, chart=kind, plan=plan))
                for row in rows:
                    writer.write_row(row)
                writer.end_section(len(rows), False)
            writer.finish(META, "charts")

        return run

    request = charts.ChartRequest("line", "Revenue", CHART_COLUMNS, rows, "day", "region", ("revenue",), "de-DE")
    charts.warm_up()
    t = medians(
        {
            "4 charted widgets": dashboard(True),
            "4 table widgets": dashboard(False),
            "one line chart SVG": lambda: [charts.to_svg(spec) for spec in charts.build_specs(request)],
            "one line chart PNG": lambda: [charts.to_png(spec) for spec in charts.build_specs(request)],
        },
        args.pdf_repeat,
    )
    per_chart = (t["4 charted widgets"] - t["4 table widgets"]) / len(plans)
    print(f"\ncharts ({len(rows)} rows each, 4 widgets, median of {args.pdf_repeat}; CPU s of this process,")
    print("  the chart engine's own threads are not counted, so the wall time is printed too)")
    for name, seconds in t.items():
        print(f"  {name:<26}{seconds:>7.2f} CPU s")
    wall = time.perf_counter()
    dashboard(True)()
    charted_wall = time.perf_counter() - wall
    wall = time.perf_counter()
    dashboard(False)()
    table_wall = time.perf_counter() - wall
    print(f"  added per chart: {per_chart:.2f} CPU s, {(charted_wall - table_wall) / len(plans):.2f} s wall")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pdf-repeat", type=int, default=3)
    parser.add_argument("--baseline", help="git revision whose writers run alongside (before/after)")
    parser.add_argument("--pdf-variants", action="store_true", help="time one-at-a-time changes to the PDF layout")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,charts,pdf,memory")
    parser.add_argument("--memory-sizes", default="10000,100000,1000000")
    parser.add_argument("--memory-child", type=int)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    skip = set(filter(None, args.skip.split(",")))
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "out"
        workdir.mkdir()
        baseline = load_baseline(args.baseline, Path(tmp)) if args.baseline else None
        if "throughput" not in skip:
            throughput(args, workdir, baseline)
        if "charts" not in skip:
            chart_cost(args, workdir)
        if "pdf" not in skip:
            pdf(args, workdir, baseline)

    if "memory" not in skip:
        print("\npeak memory writing XLSX + CSV in a fresh process")
        for size in (int(s) for s in args.memory_sizes.split(",")):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(size)], capture_output=True, text=True, check=True
            )
            elapsed = time.perf_counter() - started
            print(f"{size:>10,} rows  {float(out.stdout.strip()):>7.0f} MB  ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
