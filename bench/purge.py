"""Retention purge benchmark: 1,000,000 old executions deleted in batches while the history is being read.

    .venv/bin/python bench/purge.py [--executions 1100000] [--retention-days 33] [--batch-size N]
                                    [--probe 250,500,1000,2000] [--probe-batches 4]

Seeds a year of history with bench/seed_history.py (`--executions` over 365 days, 3 deliveries and 2
artifact rows each; files older than 30 days already purged, their rows kept, as the daily purge leaves
them), so that with `--retention-days 33` about 1,000,000 executions are past retention; the files of the
last 3 days past their expiry are marked not yet purged (the purge's file step has work). Then:

1. probe: a few execution batches at each fixed size of `--probe` (services.scheduler.purge's batch
   step, timed; each batch's transaction holds its row locks from its first statement to its commit);
2. a client reads the newest history page of the report with the most runs (shared.reports.history_query,
   50 rows, the API's query) and updates one of its runs in a loop, alone for `--before-s`, then while
   purge_expired runs to the end (adaptive batches up to BIAPP_PURGE_BATCH_SIZE).

Prints the batch times (the longest batch is the longest lock), the sizes the purge settled on, each
phase's p50/p99 and their ratio, and the longest wait of the concurrent UPDATE. Needs PostgreSQL
(BIAPP_BENCH_PG_ADMIN, default postgresql://postgres@127.0.0.1:5432/postgres); it creates and drops its
own database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from bench.dispatch import machine  # noqa: E402
from bench.seed_history import create_database, drop_database, seed  # noqa: E402
from services.scheduler import purge  # noqa: E402
from services.scheduler.purge import purge_expired  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.context import build_context  # noqa: E402
from shared.db import make_engine, make_session_factory  # noqa: E402
from shared.messaging import RecordingPublisher  # noqa: E402
from shared.reports import history_query  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Reader(threading.Thread):
    """Reads a surviving report's history page and updates one of its runs, over and over, timing each."""

    def __init__(self, factory, report_id, execution_id):
        super().__init__(daemon=True)
        self.factory, self.report_id, self.execution_id = factory, report_id, execution_id
        self.phase = "before"
        self.reads: dict[str, list[float]] = {"before": [], "during": []}
        self.writes: dict[str, list[float]] = {"before": [], "during": []}
        self.stop = threading.Event()

    def run(self) -> None:
        query = history_query(self.report_id).limit(50)
        while not self.stop.is_set():
            phase = self.phase
            began = time.perf_counter()
            with self.factory() as session:
                session.execute(query).scalars().all()
            self.reads[phase].append(time.perf_counter() - began)
            began = time.perf_counter()
            with self.factory() as session, session.begin():
                session.execute(
                    sa.text("UPDATE report_executions SET attempts = attempts WHERE id = :id"),
                    {"id": self.execution_id},
                )
            self.writes[phase].append(time.perf_counter() - began)
            time.sleep(0.005)


def probe(ctx, cutoff: datetime, sizes: list[int], batches: int) -> None:
    """Time a few execution batches at each fixed size."""
    print(f"probe: {batches} execution batches at each size (seconds, first statement to commit)")
    for size in sizes:
        times = []
        for _ in range(batches):
            began = time.perf_counter()
            purge._purge_executions(ctx, cutoff, size)
            times.append(time.perf_counter() - began)
        print(
            f"  {size:>5} rows: median {statistics.median(times):.3f}s  max {max(times):.3f}s"
            f"  ({1000 * statistics.median(times) / size:.2f} ms per execution)"
        )
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1_100_000)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--retention-days", type=int, default=33)
    parser.add_argument("--batch-size", type=int, default=None, help="BIAPP_PURGE_BATCH_SIZE (default: its default)")
    parser.add_argument("--probe", default="250,500,1000,2000", help="fixed batch sizes to time first ('' for none)")
    parser.add_argument("--probe-batches", type=int, default=4)
    parser.add_argument("--before-s", type=float, default=10)
    args = parser.parse_args()

    name = f"biapp_bench_purge_{os.getpid()}"
    db_url = create_database(name)
    try:
        env = {
            "BIAPP_DATABASE_URL": db_url,
            "BIAPP_BROKER_URL": "memory://",
            "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_LOG_LEVEL": "WARNING",
            "BIAPP_PURGE_TIME_BUDGET_S": "540",
            "BIAPP_EXECUTION_RETENTION_DAYS": str(args.retention_days),
        }
        if args.batch_size:
            env["BIAPP_PURGE_BATCH_SIZE"] = str(args.batch_size)
        settings = load_settings(env)
        factory = make_session_factory(make_engine(db_url))
        ctx = build_context(settings, RecordingPublisher(), session_factory=factory)
        print(f"machine: {machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        seeded = seed(db_url, reports=args.reports, executions=args.executions, alerts=10, events=1000)
        now = datetime.now(UTC)
        cutoff = now - timedelta(days=args.retention_days)
        with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(
                "UPDATE artifacts SET purged_at = NULL"
                " WHERE expires_at <= now() AND expires_at > now() - interval '3 days'"
            )
            conn.execute("VACUUM (ANALYZE) artifacts")
            old, expired = conn.execute(
                "SELECT (SELECT count(*) FROM report_executions WHERE queued_at < %s),"
                " (SELECT count(*) FROM artifacts WHERE expires_at <= now() AND purged_at IS NULL)",
                (cutoff,),
            ).fetchone()
            execution_id = conn.execute(
                "SELECT id FROM report_executions WHERE report_id = %s ORDER BY queued_at DESC LIMIT 1",
                (seeded.big_report_id,),
            ).fetchone()[0]
        print(
            f"seeded {seeded.executions:,} executions, {seeded.deliveries:,} deliveries, {seeded.artifacts:,} artifact"
            f" rows in {seeded.seconds:.0f}s: {old:,} past {args.retention_days} days' retention, {expired:,} expired"
            f" files not yet purged; largest batch {settings.purge_batch_size}\n"
        )
        sizes = [int(size) for size in args.probe.split(",") if size.strip()]
        if sizes:
            probe(ctx, cutoff, sizes, args.probe_batches)

        reader = Reader(factory, uuid.UUID(seeded.big_report_id), execution_id)
        reader.start()
        time.sleep(args.before_s)
        reader.phase = "during"
        began = time.perf_counter()
        ticks = []
        while True:
            result = purge_expired(ctx, now=now)
            ticks.append(result)
            if result.finished:
                break
        took = time.perf_counter() - began
        reader.stop.set()
        reader.join()

        purged = sum(t.executions for t in ticks)
        batches = [b for t in ticks for b in t.batch_s]
        rows = [r for t in ticks for r in t.batch_rows]
        print(
            f"purge: {purged:,} executions and {sum(t.files for t in ticks):,} files in {took:.1f}s,"
            f" {len(batches)} batches in {len(ticks)} ticks"
        )
        print(
            f"  batch transaction: p50 {percentile(batches, 0.5):.3f}s  p99 {percentile(batches, 0.99):.3f}s"
            f"  max {max(batches):.3f}s (the longest any batch held its locks)"
        )
        print(
            f"  batch sizes: median {statistics.median(rows):.0f}, min {min(rows)}, max {max(rows)} rows;"
            f" batches over 0.5 s: {sum(b > 0.5 for b in batches)}"
        )
        print(f"  target: no lock held > 1 s: {'met' if max(batches) < 1 else 'MISSED'}")
        with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
            left_old = conn.execute("SELECT count(*) FROM report_executions WHERE queued_at < %s", (cutoff,)).fetchone()
        print(f"  executions past retention left: {left_old[0]}\n")
        for label, series in (("history page (50 rows)", reader.reads), ("UPDATE of a surviving run", reader.writes)):
            before, during = series["before"], series["during"]
            print(
                f"{label}: before p50 {1000 * statistics.median(before):.1f} ms p99"
                f" {1000 * percentile(before, 0.99):.1f} ms ({len(before)}) | during p50"
                f" {1000 * statistics.median(during):.1f} ms p99 {1000 * percentile(during, 0.99):.1f} ms"
                f" max {1000 * max(during):.1f} ms ({len(during)}) | p99 ratio"
                f" {percentile(during, 0.99) / percentile(before, 0.99):.2f}x"
            )
        ratio = percentile(reader.reads["during"], 0.99) / percentile(reader.reads["before"], 0.99)
        print(f"target history p99 within 2x during the purge: {'met' if ratio <= 2 else 'MISSED'}")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
