"""Pipeline throughput: reports of 5,000 rows as XLSX + CSV, by the real workers and by a plain cron loop.

    .venv/bin/python bench/pipeline.py [--reports 40] [--rows 5000] [--rounds 2] [--workers-args "..."]

The contenders, against the same data, the same SMTP sink and the same machine, one after the
other in each round (the order alternates, so a noisy neighbour hurts both alike):

* pipeline: `biapp worker renderer` and `biapp worker mailer` with their default settings (processes
  from the CPU count) on RabbitMQ and PostgreSQL; every run is queued at once (as a tick at 09:00
  does) and timed from the first publish until the sink has every email and every run is `success`.
* loop: what a cron script does: for each report, psycopg runs the query, openpyxl (write-only)
  and the csv module write the files, smtplib sends them; one after the other.

Prints reports per minute of each and the ratio. Needs PostgreSQL (BIAPP_BENCH_PG_ADMIN) and
RabbitMQ (BIAPP_BENCH_AMQP_HOST); creates and drops its own databases, role and vhost.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import openpyxl  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from dispatch import AMQP_HOST, PG_ADMIN, machine, rabbitmqctl  # noqa: E402

from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import DataSource, EmailConfig, ReportExecution, SavedQuery, ScheduledReport  # noqa: E402

SQL = (
    "select order_id, customer, region, product, quantity, amount, ordered_on, shipped_at from orders order by order_id"
)
READER = "biapp_bench_reader"


class Sink:
    """An SMTP server on loopback that counts what it accepts (the same for both contenders)."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self.lock:
            self.count += 1
        return "250 OK"


def admin(database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{database}", autocommit=True)


def make_data(name: str, rows: int) -> None:
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f"DO $$ BEGIN CREATE ROLE {READER} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    with admin(name) as conn:
        conn.execute(
            "CREATE TABLE orders AS SELECT g AS order_id, 'Customer ' || (g % 997) AS customer,"
            " (ARRAY['North','South','East','West'])[1 + g % 4] AS region, 'Product ' || (g % 53) AS product,"
            " 1 + g % 17 AS quantity, round((g * 7.31) % 10000, 2)::numeric(12,2) AS amount,"
            " date '2026-01-01' + (g % 330) AS ordered_on,"
            " timestamptz '2026-01-01 08:00+00' + make_interval(mins => g * 7) AS shipped_at"
            f" FROM generate_series(1, {rows}) AS g"
        )
        conn.execute("ALTER TABLE orders ADD PRIMARY KEY (order_id)")
        conn.execute(f"GRANT SELECT ON orders TO {READER}")
        conn.execute("ANALYZE orders")


def seed(factory, data_db: str, reports: int, smtp_port: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    host, port = "127.0.0.1", int(psycopg.conninfo.conninfo_to_dict(PG_ADMIN).get("port") or 5432)
    with transaction(factory) as session:
        owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
        session.add(
            EmailConfig(
                is_system_default=True, host="127.0.0.1", port=smtp_port, security="none", from_address="r@example.com"
            )
        )
        source = DataSource(
            name="Sales", kind="postgresql", host=host, port=port, database=data_db, username=READER, options={}
        )
        session.add(source)
        session.flush()
        query = SavedQuery(name="Orders", kind="sql", data_source_id=source.id, sql=SQL, owner_id=owner.id)
        session.add(query)
        session.flush()
        ids = []
        for n in range(reports):
            report = ScheduledReport(
                owner_id=owner.id,
                name=f"Orders {n}",
                saved_query_id=query.id,
                schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
                recipients=[f"team{n}@example.com"],
                formats=["xlsx", "csv"],
            )
            session.add(report)
            session.flush()
            ids.append(report.id)
        return ids, owner.id


def run_pipeline(factory, publisher, report_ids, owner_id, sink: Sink, timeout: float = 900) -> float:
    """Queue a run of every report at once; seconds until every email arrived and every run is success."""
    with transaction(factory) as session:
        owner = session.get(users.User, owner_id)
        created = [
            runs.create_execution(
                session, session.get(ScheduledReport, rid), trigger="manual", now=datetime.now(UTC), requester=owner
            ).id
            for rid in report_ids
        ]
    expected = sink.count + len(created)
    started = time.perf_counter()
    for execution_id in created:
        publisher.send(RENDER_REPORT, str(execution_id))
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if sink.count >= expected:
            with factory() as session:
                done = session.execute(
                    sa.select(sa.func.count()).where(
                        ReportExecution.id.in_(created), ReportExecution.status.in_(("success", "partial", "failed"))
                    )
                ).scalar_one()
            if done == len(created):
                elapsed = time.perf_counter() - started
                with factory() as session:
                    bad = session.execute(
                        sa.select(ReportExecution.status, ReportExecution.error).where(
                            ReportExecution.id.in_(created), ReportExecution.status != "success"
                        )
                    ).all()
                if bad:
                    raise SystemExit(f"pipeline runs did not succeed: {bad[:3]}")
                return elapsed
        time.sleep(0.05)
    raise SystemExit("the pipeline did not finish in time")


def run_loop(data_db: str, reports: int, smtp_port: int, workdir: Path) -> float:
    """The cron script: one report after the other, query → XLSX + CSV → one email with both files."""
    dsn = PG_ADMIN.rsplit("/", 1)[0] + f"/{data_db}"
    started = time.perf_counter()
    for n in range(reports):
        with psycopg.connect(dsn.replace("postgres@", f"{READER}@", 1)) as conn, conn.cursor() as cur:
            cur.execute(SQL)
            header = [column.name for column in cur.description]
            rows = cur.fetchall()
        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("Orders")
        sheet.append(header)
        for row in rows:
            sheet.append([value.replace(tzinfo=None) if isinstance(value, datetime) else value for value in row])
        xlsx_path = workdir / f"orders-{n}.xlsx"
        book.save(xlsx_path)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "r@example.com", f"team{n}@example.com", f"Orders {n}"
        message.set_content("The orders report is attached.")
        message.add_attachment(
            xlsx_path.read_bytes(),
            maintype="application",
            subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            filename=xlsx_path.name,
        )
        message.add_attachment(text.getvalue().encode(), maintype="text", subtype="csv", filename=f"orders-{n}.csv")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            smtp.send_message(message)
    return time.perf_counter() - started


def start_worker(service: str, env: dict, extra: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "biapp"), "worker", service, *extra],
        env=env,
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        process_group=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--renderer-args", default="", help="extra arguments for `biapp worker renderer`")
    parser.add_argument("--mailer-args", default="", help="extra arguments for `biapp worker mailer`")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    app_db, data_db, vhost = f"biapp_bench_pipe_{tag}", f"biapp_bench_data_{tag}", f"biapp_bench_{tag}"
    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    workers: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="biapp-bench-pipeline-"))
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{app_db}"')
    make_data(data_db, args.rows)
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
        "BIAPP_OUTBOUND_ALLOW": "127.0.0.0/8",
        "BIAPP_LOG_FORMAT": "text",
        "BIAPP_LOG_LEVEL": "WARNING",
        "BIAPP_ARTIFACT_STORE": f"filesystem:{workdir / 'artifacts'}",
    }
    try:
        upgrade(db_url)
        settings = load_settings(env)
        factory = make_session_factory(make_engine(db_url))
        report_ids, owner_id = seed(factory, data_db, args.reports, smtp_port)
        broker = build_broker(settings)
        publisher = BrokerPublisher(broker)
        workers = [
            start_worker("renderer", env, shlex.split(args.renderer_args), workdir / "renderer.log"),
            start_worker("mailer", env, shlex.split(args.mailer_args), workdir / "mailer.log"),
        ]
        warm = run_pipeline(factory, publisher, report_ids[:4], owner_id, sink, timeout=180)
        print(f"warm-up: 4 reports through the pipeline in {warm:.1f} s (workers started, libraries loaded)")
        run_loop(data_db, 2, smtp_port, workdir)
        print(f"machine: {machine()}; {args.reports} reports of {args.rows:,} rows, XLSX + CSV, {args.rounds} rounds")
        times: dict[str, list[float]] = {"pipeline": [], "loop": []}
        for round_no in range(args.rounds):
            order = ("loop", "pipeline") if round_no % 2 == 0 else ("pipeline", "loop")
            for contender in order:
                if contender == "loop":
                    seconds = run_loop(data_db, args.reports, smtp_port, workdir)
                else:
                    seconds = run_pipeline(factory, publisher, report_ids, owner_id, sink)
                times[contender].append(seconds)
                print(f"  round {round_no + 1} {contender:<8} {seconds:6.1f} s  {args.reports / seconds * 60:6.1f}/min")
        rate = {name: args.reports / statistics.median(values) * 60 for name, values in times.items()}
        print(f"pipeline {rate['pipeline']:.1f} reports/min, loop {rate['loop']:.1f} reports/min")
        print(f"ratio pipeline / loop: {rate['pipeline'] / rate['loop']:.2f}")
        broker.close()
    finally:
        for worker in workers:
            try:
                os.killpg(worker.pid, 15)
                worker.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        controller.stop()
        make_engine(db_url).dispose()
        with admin() as conn:
            for name in (app_db, data_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
