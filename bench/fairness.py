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
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pika  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from dispatch import AMQP_HOST, PG_ADMIN, machine, rabbitmqctl  # noqa: E402
from pipeline import READER, admin, make_data, start_worker  # noqa: E402

from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import DataSource, ReportExecution, SavedQuery, ScheduledReport  # noqa: E402

COLUMNS = "order_id, customer, region, product, quantity, amount, ordered_on, shipped_at"


def seed(factory, data_db: str, small: int, small_rows: int) -> tuple[uuid.UUID, list[uuid.UUID], uuid.UUID]:
    port = int(__import__("psycopg").conninfo.conninfo_to_dict(PG_ADMIN).get("port") or 5432)
    with transaction(factory) as session:
        owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
        source = DataSource(
            name="Sales", kind="postgresql", host="127.0.0.1", port=port, database=data_db, username=READER, options={}
        )
        session.add(source)
        session.flush()

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

    tag = uuid.uuid4().hex[:8]
    app_db, data_db, vhost = f"biapp_bench_fair_{tag}", f"biapp_bench_data_{tag}", f"biapp_bench_{tag}"
    workdir = Path(tempfile.mkdtemp(prefix="biapp-bench-fairness-"))
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{app_db}"')
    t0 = time.monotonic()
    make_data(data_db, args.export_rows)
    print(f"data: {args.export_rows:,} orders in {time.monotonic() - t0:.0f} s")
    amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/%2F?heartbeat=60"
    if rabbitmqctl("add_vhost", vhost) and rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}?heartbeat=60"
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{app_db}"
    env = {
        **os.environ,
        "BIAPP_DATABASE_URL": db_url,
        "BIAPP_BROKER_URL": amqp,
        "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
        "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
        "BIAPP_LOG_FORMAT": "text",
        "BIAPP_LOG_LEVEL": "INFO",
        "BIAPP_MAX_REPORT_ROWS": str(max(args.export_rows, 1_000_000)),
        "BIAPP_ARTIFACT_STORE": f"filesystem:{workdir / 'artifacts'}",
    }
    worker: subprocess.Popen | None = None
    try:
        upgrade(db_url)
        factory = make_session_factory(make_engine(db_url))
        export, smalls, owner_id = seed(factory, data_db, args.small, args.small_rows)
        broker = build_broker(load_settings(env))
        publisher = BrokerPublisher(broker)
        print(f"machine: {machine()}")
        print(
            f"{args.small} small reports of {args.small_rows:,} rows and one export of {args.export_rows:,} rows, CSV"
        )

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
        os.killpg(worker.pid, 15)
        worker.wait(timeout=120)

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
        print(f"export: {row.status}, {row.row_count or 0:,} rows, rendered in {took:.0f} s on biapp.renderer.heavy")
        broker.close()
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=120)
        make_engine(db_url).dispose()
        with admin() as conn:
            for name in (app_db, data_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
