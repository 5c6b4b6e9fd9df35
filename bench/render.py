"""Renderer benchmark: our writers against the bare libraries on the same rows, side by side.

    .venv/bin/python bench/render.py [--rows 100000] [--memory-sizes 10000,100000,1000000]

1. rows/s of XlsxWriter vs bare openpyxl write-only, CsvWriter vs bare csv.writer;
2. seconds for a 1,000-row PDF: our layout (fixed table layout, explicit widths) vs a
   naive one-table WeasyPrint render (automatic layout);
3. peak memory (ru_maxrss of a fresh process) writing XLSX + CSV for growing row counts.
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openpyxl import Workbook  # noqa: E402

from services.renderer.writers import RenderMeta, Section  # noqa: E402
from services.renderer.writers.csv_writer import CsvWriter  # noqa: E402
from services.renderer.writers.pdf_writer import PdfWriter, safe_url_fetcher  # noqa: E402
from services.renderer.writers.xlsx_writer import XlsxWriter  # noqa: E402
from shared.query.engine import ColumnInfo  # noqa: E402

COLUMNS = [
    ColumnInfo("order_id", "integer"),
    ColumnInfo("customer", "string", label="Customer"),
    ColumnInfo("amount", "decimal", label="Amount", format="currency"),
    ColumnInfo("share", "decimal", label="Share", format="percent"),
    ColumnInfo("day", "date", label="Day"),
    ColumnInfo("closed_at", "datetime", label="Closed at"),
    ColumnInfo("paid", "boolean", label="Paid"),
]
META = RenderMeta("Benchmark", "2026-11-28 09:00 CET", "Europe/Berlin")


def make_rows(n: int):
    start = datetime(2026, 1, 1, 9, 0)
    for i in range(n):
        yield (
            i,
            f"customer {i % 5000} with a name",
            Decimal(i % 100_000) / 4,
            (i % 100) / 100,
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
    """Rows without Decimal or datetime values: the CSV writer's pass-through path."""
    for i in range(n):
        yield (
            i,
            f"customer {i % 5000} with a name",
            (i % 100) / 100,
            date(2026, 1, 1) + timedelta(days=i % 365),
            i % 2 == 0,
        )


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ours(writer_cls, rows, workdir, columns=COLUMNS, **options):
    def run():
        writer = writer_cls(workdir, **options)
        writer.begin_section(Section("Benchmark", columns))
        for row in rows:
            writer.write_row(row)
        writer.end_section(len(rows), False)
        writer.finish(META, "benchmark")

    return run


def bare_xlsx(rows, workdir, columns=COLUMNS):
    def run():
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Benchmark")
        ws.append([c.name for c in columns])
        for row in rows:
            ws.append(row)
        wb.save(workdir / "bare.xlsx")

    return run


def bare_csv(rows, workdir, columns=COLUMNS):
    def run():
        with open(workdir / "bare.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([c.name for c in columns])
            for row in rows:
                writer.writerow(row)

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


def best_of(fn, repeat: int) -> float:
    return min(timed(fn) for _ in range(repeat))


def memory_child(rows: int) -> None:
    """Run in a fresh process: write XLSX + CSV from a generator, print peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        writers = [XlsxWriter(workdir, timezone="Europe/Berlin"), CsvWriter(workdir)]
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
    return f"{os.cpu_count()} CPUs (nproc), {model}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-sizes", default="10000,100000,1000000")
    parser.add_argument("--memory-child", type=int)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    print(f"machine: {machine()}")
    rows = list(make_rows(args.rows))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        plain = list(make_plain_rows(args.rows))
        opts = {"timezone": "Europe/Berlin"}
        for label, data, columns in (
            ("typed rows (Decimal, datetime)", rows, COLUMNS),
            ("plain rows (int, text, float, date, bool)", plain, PLAIN_COLUMNS),
        ):
            print(f"\nthroughput, {label}: {args.rows:,} rows x {len(columns)} columns, best of {args.repeat}")
            print(f"{'writer':<8}{'ours rows/s':>14}{'bare rows/s':>14}{'ours/bare':>11}")
            pairs = [
                ("xlsx", ours(XlsxWriter, data, workdir, columns, **opts), bare_xlsx(data, workdir, columns)),
                ("csv", ours(CsvWriter, data, workdir, columns, **opts), bare_csv(data, workdir, columns)),
            ]
            for name, mine, bare in pairs:
                # Interleaved so that a noisy neighbour hurts both sides alike.
                t_mine, t_bare = float("inf"), float("inf")
                for _ in range(args.repeat):
                    t_mine, t_bare = min(t_mine, timed(mine)), min(t_bare, timed(bare))
                print(f"{name:<8}{args.rows / t_mine:>14,.0f}{args.rows / t_bare:>14,.0f}{t_bare / t_mine:>10.0%}")

        pdf_rows = rows[:1000]
        print("\nPDF, 1,000 rows")
        mine, naive = (
            ours(PdfWriter, pdf_rows, workdir, timezone="Europe/Berlin", max_rows=1000),
            naive_pdf(pdf_rows, workdir),
        )
        t_mine, t_naive = float("inf"), float("inf")
        for _ in range(2):
            t_mine, t_naive = min(t_mine, timed(mine)), min(t_naive, timed(naive))
        print(f"{'ours (fixed layout, widths)':<32}{t_mine:>8.2f} s")
        print(f"{'naive (auto layout)':<32}{t_naive:>8.2f} s   ours/naive {t_mine / t_naive:.0%}")

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
