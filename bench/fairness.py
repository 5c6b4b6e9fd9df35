"""No report waits behind another: a 2,000,000-row export due with 100 small reports.

    .venv/bin/python bench/fairness.py [--small 100] [--small-rows 2000] [--export-rows 2000000]

Two runs on the same data, RabbitMQ and PostgreSQL, one after the other:

* baseline: one renderer process (`biapp worker renderer --lane main --processes 1 --threads 1`),
  the small reports only;
* contended: two renderer processes (`biapp worker renderer --processes 1 --threads 1`, which adds
  its one process on biapp.renderer.heavy), the export queued first, then the small reports. The
  export's report is known to be heavy: its three earlier renders took minutes.

Each run publishes every run at once (a 09:00 tick) and records when each small report is
rendered. Prints the small reports' finish times (p50, p95, last) in both runs, the ratio, and
how long the export took. The claim: the small reports finish no later than in the baseline.
Needs PostgreSQL (BIAPP_BENCH_PG_ADMIN) and RabbitMQ (BIAPP_BENCH_AMQP_HOST); creates and drops
its own databases, role and vhost.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pika  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.dispatch import machine  # noqa: E402
from bench.system import COLUMNS, BenchSystem, add_owner_and_source, start_worker, stop_worker  # noqa: E402
from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import transaction  # noqa: E402
from shared.messaging import QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import ReportExecution, SavedQuery, ScheduledReport  # noqa: E402


def seed(factory, data_db: str, small: int, small_rows: int) -> tuple[uuid.UUID, list[uuid.UUID], uuid.UUID]:
    with transaction(factory) as session:
        owner, source = add_owner_and_source(session, data_db)

        def report(name: str, sql: str) -> uuid.UUID:
            query = SavedQuery(name=name, kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
            session.add(query)
            session.flush()
            made = ScheduledReport(
                owner_id=owner.id,
                name=name,
                saved_query_id=query.id,
                schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
                recipients=["team@example.com"],
                formats=["csv"],
            )
            session.add(made)
            session.flush()
            return made.id

        export = report("Full order export", f"select {COLUMNS} from orders order by order_id")
        now = datetime.now(UTC)
        for day in (1, 2, 3):  # what the renderer learns from: earlier renders of several minutes
            at = now - timedelta(days=day)
            session.add(
                ReportExecution(
                    report_id=export,
                    trigger="schedule",
                    status="success",
                    scheduled_for=at,
                    queued_at=at,
                    started_at=at,
                    rendered_at=at + timedelta(minutes=4),
                    finished_at=at + timedelta(minutes=4, seconds=5),
                )
            )
        smalls = [
            report(f"Region summary {n}", f"select {COLUMNS} from orders where order_id <= {small_rows} order by 1")
            for n in range(small)
        ]
        return export, smalls, owner.id


def consumers(amqp: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    try:
        return connection.channel().queue_declare(queue=queue, durable=True, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        connection.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def run(factory, publisher, report_ids, owner_id) -> tuple[datetime, list[uuid.UUID]]:
    with transaction(factory) as session:
        owner = session.get(users.User, owner_id)
        now = datetime.now(UTC)
        ids = [
            runs.create_execution(
                session, session.get(ScheduledReport, rid), trigger="manual", now=now, requester=owner
            ).id
            for rid in report_ids
        ]
    started = datetime.now(UTC)
    for execution_id in ids:
        publisher.send(RENDER_REPORT, str(execution_id))
    return started, ids


def finish_times(factory, started: datetime, ids, timeout: float) -> list[float]:
    def done():
        with factory() as session:
            rows = session.execute(
                sa.select(ReportExecution.status, ReportExecution.rendered_at, ReportExecution.error).where(
                    ReportExecution.id.in_(ids)
                )
            ).all()
        if all(status not in ("queued", "running") for status, _, _ in rows):
            return rows
        return None

    rows = wait_for(done, timeout, "the small reports")
    failed = [error for status, _, error in rows if status != "rendered"]
    if failed:
        raise SystemExit(f"{len(failed)} small reports did not render: {failed[:2]}")
    return sorted((at - started).total_seconds() for _, at, _ in rows)


def describe(times: list[float]) -> str:
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return f"p50 {statistics.median(times):5.1f} s, p95 {p95:5.1f} s, last {times[-1]:5.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--small-rows", type=int, default=2000)
    parser.add_argument("--export-rows", type=int, default=2_000_000)
    args = parser.parse_args()

    settings = {"BIAPP_LOG_LEVEL": "INFO", "BIAPP_MAX_REPORT_ROWS": str(max(args.export_rows, 1_000_000))}
    with BenchSystem("fair", args.export_rows, **settings) as system:
        factory, env, workdir, amqp = system.factory, system.env, system.workdir, system.amqp
        export, smalls, owner_id = seed(factory, system.data_db, args.small, args.small_rows)
        broker = build_broker(load_settings(env))
        publisher = BrokerPublisher(broker)
        print(f"machine: {machine()}")
        print(
            f"{args.small} small reports of {args.small_rows:,} rows and one export of {args.export_rows:,} rows, CSV"
        )
        worker: subprocess.Popen | None = None
        try:
            # Baseline: one process, no export.
            worker = start_worker(
                "renderer", env, ["--lane", "main", "--processes", "1", "--threads", "1"], workdir / "baseline.log"
            )
            wait_for(lambda: consumers(amqp, QUEUE_RENDERER), 120, "the baseline renderer")
            warm_started, warm = run(factory, publisher, smalls[:2], owner_id)
            finish_times(factory, warm_started, warm, 120)
            started, ids = run(factory, publisher, smalls, owner_id)
            baseline = finish_times(factory, started, ids, 900)
            print(f"baseline  (1 process, no export):        {describe(baseline)}")
            stop_worker(worker)

            # Contended: the main process plus the heavy one, the export queued first.
            worker = start_worker("renderer", env, ["--processes", "1", "--threads", "1"], workdir / "contended.log")
            wait_for(
                lambda: consumers(amqp, QUEUE_RENDERER) and consumers(amqp, QUEUE_RENDERER_HEAVY),
                120,
                "both renderer lanes",
            )
            warm_started, warm = run(factory, publisher, smalls[:2], owner_id)
            finish_times(factory, warm_started, warm, 120)
            started, ids = run(factory, publisher, [export, *smalls], owner_id)
            export_id, small_ids = ids[0], ids[1:]
            contended = finish_times(factory, started, small_ids, 900)
            print(f"contended (2 processes, export first):   {describe(contended)}")
            print(f"last small report: contended / baseline = {contended[-1] / baseline[-1]:.2f}")

            def export_done():
                with factory() as session:
                    row = session.get(ReportExecution, export_id)
                    return row if row.status not in ("queued", "running") else None

            row = wait_for(export_done, 1800, "the export")
            took = (row.rendered_at - row.started_at).total_seconds() if row.rendered_at else float("nan")
            print(
                f"export: {row.status}, {row.row_count or 0:,} rows, rendered in {took:.0f} s on {QUEUE_RENDERER_HEAVY}"
            )
        finally:
            if worker is not None:
                stop_worker(worker)
            broker.close()


if __name__ == "__main__":
    main()
