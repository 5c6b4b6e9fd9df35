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
import shlex
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openpyxl  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from bench.dispatch import PG_ADMIN, machine  # noqa: E402
from bench.system import READER, BenchSystem, add_owner_and_source, start_worker, stop_worker  # noqa: E402
from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import transaction  # noqa: E402
from shared.messaging import RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import EmailConfig, ReportExecution, SavedQuery, ScheduledReport  # noqa: E402

SQL = (
    "select order_id, customer, region, product, quantity, amount, ordered_on, shipped_at from orders order by order_id"
)


class Sink:
    """An SMTP server on loopback that counts what it accepts (the same for both contenders)."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self.lock:
            self.count += 1
        return "250 OK"


def seed(factory, data_db: str, reports: int, smtp_port: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    with transaction(factory) as session:
        owner, source = add_owner_and_source(session, data_db)
        session.add(
            EmailConfig(
                is_system_default=True, host="127.0.0.1", port=smtp_port, security="none", from_address="r@example.com"
            )
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--renderer-args", default="", help="extra arguments for `biapp worker renderer`")
    parser.add_argument("--mailer-args", default="", help="extra arguments for `biapp worker mailer`")
    args = parser.parse_args()

    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    workers: list[subprocess.Popen] = []
    try:
        with BenchSystem("pipe", args.rows, BIAPP_LOG_LEVEL="WARNING") as system:
            factory, env, workdir = system.factory, system.env, system.workdir
            report_ids, owner_id = seed(factory, system.data_db, args.reports, smtp_port)
            broker = build_broker(load_settings(env))
            publisher = BrokerPublisher(broker)
            try:
                workers = [
                    start_worker("renderer", env, shlex.split(args.renderer_args), workdir / "renderer.log"),
                    start_worker("mailer", env, shlex.split(args.mailer_args), workdir / "mailer.log"),
                ]
                warm = run_pipeline(factory, publisher, report_ids[:4], owner_id, sink, timeout=180)
                print(f"warm-up: 4 reports through the pipeline in {warm:.1f} s (workers started, libraries loaded)")
                run_loop(system.data_db, 2, smtp_port, workdir)
                print(
                    f"machine: {machine()}; {args.reports} reports of {args.rows:,} rows, XLSX + CSV, "
                    f"{args.rounds} rounds"
                )
                times: dict[str, list[float]] = {"pipeline": [], "loop": []}
                for round_no in range(args.rounds):
                    order = ("loop", "pipeline") if round_no % 2 == 0 else ("pipeline", "loop")
                    for contender in order:
                        if contender == "loop":
                            seconds = run_loop(system.data_db, args.reports, smtp_port, workdir)
                        else:
                            seconds = run_pipeline(factory, publisher, report_ids, owner_id, sink)
                        times[contender].append(seconds)
                        rate = args.reports / seconds * 60
                        print(f"  round {round_no + 1} {contender:<8} {seconds:6.1f} s  {rate:6.1f}/min")
                rate = {name: args.reports / statistics.median(values) * 60 for name, values in times.items()}
                print(f"pipeline {rate['pipeline']:.1f} reports/min, loop {rate['loop']:.1f} reports/min")
                print(f"ratio pipeline / loop: {rate['pipeline'] / rate['loop']:.2f}")
            finally:
                for worker in workers:
                    stop_worker(worker)
                broker.close()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
