"""Renderer memory: peak RSS of a real `biapp worker renderer` rendering 10k, 100k and 1M rows.

    .venv/bin/python bench/render_memory.py [--sizes 10000,100000,1000000] [--baseline REV] [--formats xlsx,csv,pdf]

For each size a fresh worker (one process, one thread) renders one run of a report reading that
many rows from PostgreSQL into XLSX + CSV + PDF (the PDF holds the first BIAPP_PDF_MAX_ROWS),
and the highest VmHWM among its processes is the figure. With --baseline (default HEAD, i.e. the
last commit) the same runs are made by the worker as it was at that revision (a git worktree),
in the same run, so both columns share the machine's mood. The claim: the largest and smallest
peaks stay within 1.5× of each other. Needs PostgreSQL and RabbitMQ like the other benchmarks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.dispatch import machine  # noqa: E402
from bench.fairness import consumers  # noqa: E402
from bench.system import COLUMNS, BenchSystem, add_owner_and_source, start_worker, stop_worker  # noqa: E402
from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import transaction  # noqa: E402
from shared.messaging import QUEUE_RENDERER, RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import ReportExecution, SavedQuery, ScheduledReport  # noqa: E402
from tests.integration.test_render_pipeline import peak_rss_mb  # noqa: E402


def seed(factory, data_db: str, sizes: list[int], formats: list[str]) -> tuple[dict[int, uuid.UUID], uuid.UUID]:
    with transaction(factory) as session:
        owner, source = add_owner_and_source(session, data_db)
        reports = {}
        for size in sizes:
            sql = f"select {COLUMNS} from orders where order_id <= {size} order by order_id"
            query = SavedQuery(name=f"{size} orders", kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
            session.add(query)
            session.flush()
            report = ScheduledReport(
                owner_id=owner.id,
                name=f"Orders {size}",
                saved_query_id=query.id,
                schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
                recipients=["team@example.com"],
                formats=formats,
            )
            session.add(report)
            session.flush()
            reports[size] = report.id
        return reports, owner.id


def render_once(tree: Path, args: list[str], env: dict, factory, publisher, report_id, owner_id, log: Path):
    """A fresh worker from `tree` renders one run; returns (peak RSS MB, seconds)."""
    worker = start_worker("renderer", env, args, log, tree=tree)
    try:
        deadline = time.monotonic() + 120
        while not consumers(env["BIAPP_BROKER_URL"], QUEUE_RENDERER):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the renderer from {tree} did not start; see {log}")
            time.sleep(0.2)
        with transaction(factory) as session:
            owner = session.get(users.User, owner_id)
            report = session.get(ScheduledReport, report_id)
            execution_id = runs.create_execution(
                session, report, trigger="manual", now=datetime.now(UTC), requester=owner
            ).id
        started = time.perf_counter()
        publisher.send(RENDER_REPORT, str(execution_id))
        while True:
            with factory() as session:
                status, error = session.execute(
                    sa.select(ReportExecution.status, ReportExecution.error).where(ReportExecution.id == execution_id)
                ).one()
            if status not in ("queued", "running"):
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        if status != "rendered":
            raise SystemExit(f"render ended {status}: {error}")
        return peak_rss_mb(worker.pid), seconds
    finally:
        stop_worker(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with ('' for none)")
    parser.add_argument("--formats", default="xlsx,csv,pdf")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = args.formats.split(",")

    trees = {"current": ROOT}
    with BenchSystem("mem", max(sizes), BIAPP_MAX_REPORT_ROWS=str(max(max(sizes), 1_000_000))) as system:
        if args.baseline:
            baseline = system.workdir / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline], check=True
            )
            trees = {f"baseline ({args.baseline})": baseline, "current": ROOT}
        try:
            reports, owner_id = seed(system.factory, system.data_db, sizes, formats)
            broker = build_broker(load_settings(system.env))
            publisher = BrokerPublisher(broker)
            print(f"machine: {machine()}; formats {'+'.join(formats)}; one fresh worker per render")
            results: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in trees}
            for size in sizes:
                for name, tree in trees.items():
                    extra = ["--processes", "1", "--threads", "1"] + (["--lane", "main"] if tree == ROOT else [])
                    log = system.workdir / f"{name.split()[0]}-{size}.log"
                    results[name][size] = render_once(
                        tree, extra, system.env, system.factory, publisher, reports[size], owner_id, log
                    )
                    peak, seconds = results[name][size]
                    print(f"  {name:<22} {size:>9,} rows: peak RSS {peak:6.0f} MB, {seconds:6.1f} s")
            for name, by_size in results.items():
                peaks = [peak for peak, _ in by_size.values()]
                print(f"{name}: largest / smallest peak = {max(peaks) / min(peaks):.2f}")
            broker.close()
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(system.workdir / "baseline")]
                )


if __name__ == "__main__":
    main()
