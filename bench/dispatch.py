"""Dispatcher benchmark: one tick over 10,000 active reports (1,000 due) on PostgreSQL + RabbitMQ.

    .venv/bin/python bench/dispatch.py [--reports 10000] [--due 1000] [--repeat 3]

Compares our tick (claim due rows by index FOR UPDATE SKIP LOCKED, insert executions
ON CONFLICT DO NOTHING, advance next_run_at, commit, publish with confirms) with the
naive loop simple schedulers use: load every active report, ask each schedule in
Python whether it fired during the last minute, then insert and publish the due ones.
Needs PostgreSQL (BIAPP_BENCH_PG_ADMIN, default postgresql://postgres@127.0.0.1:5432/postgres)
and RabbitMQ (BIAPP_BENCH_AMQP_HOST, default 127.0.0.1, guest/guest); it creates and
drops its own database and vhost.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pika  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from services.scheduler.dispatch import dispatch_due_reports  # noqa: E402
from shared import users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.context import build_context  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import QUEUE_RENDERER, BrokerPublisher, build_broker  # noqa: E402
from shared.models import ReportExecution, SavedQuery, ScheduledReport  # noqa: E402
from shared.runs import planned_recipients  # noqa: E402
from shared.schedules import next_run, parse_schedule  # noqa: E402

PG_ADMIN = os.environ.get("BIAPP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("BIAPP_BENCH_AMQP_HOST", "127.0.0.1")
TICK = timedelta(minutes=1)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60).returncode == 0


def purge(amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        for queue in (QUEUE_RENDERER, f"{QUEUE_RENDERER}.DQ"):
            channel = connection.channel()
            try:
                channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        connection.close()


def seed(factory, total: int, due: int, fired: datetime) -> None:
    """`total` active daily reports; `due` of them fired at `fired`, the rest later today or tomorrow."""
    with transaction(factory) as session:
        owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        rows = []
        for i in range(total):
            at = fired if i < due else fired + timedelta(minutes=5 + (i % 1400))
            schedule = {"frequency": "daily", "time": f"{at:%H:%M}", "timezone": "UTC"}
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "owner_id": owner.id,
                    "name": f"{'due' if i < due else 'later'} {i}",
                    "saved_query_id": query.id,
                    "schedule": schedule,
                    "timezone": "UTC",
                    "recipients": [f"r{i}@example.com"],
                    "cc": [],
                    "formats": ["csv"],
                    "send_if_empty": True,
                    "csv_bom": False,
                    "is_active": True,
                    "next_run_at": at if at > fired or i < due else at + timedelta(days=1),
                }
            )
        session.execute(sa.insert(ScheduledReport), rows)


def reset(factory, fired: datetime, amqp_url: str) -> None:
    with transaction(factory) as session:
        session.execute(sa.delete(ReportExecution))
        session.execute(sa.update(ScheduledReport).where(ScheduledReport.name.like("due %")).values(next_run_at=fired))
    purge(amqp_url)


def naive_tick(ctx, now: datetime) -> int:
    """What simple schedulers do: load everything, evaluate every schedule in Python."""
    sent = []
    with transaction(ctx.session_factory) as session:
        for report in session.execute(sa.select(ScheduledReport).where(ScheduledReport.is_active)).scalars():
            occurrence = next_run(parse_schedule(report.schedule), now - TICK)
            if occurrence <= now:
                execution_id = uuid.uuid4()
                inserted = session.execute(
                    postgresql.insert(ReportExecution)
                    .values(
                        id=execution_id,
                        report_id=report.id,
                        trigger="schedule",
                        status="queued",
                        scheduled_for=occurrence,
                        queued_at=now,
                        last_enqueued_at=now,
                        recipients=planned_recipients(report, trigger="schedule", requester=None),
                    )
                    .on_conflict_do_nothing(index_elements=["report_id", "scheduled_for"])
                ).rowcount
                if inserted:
                    sent.append(execution_id)
    for execution_id in sent:
        ctx.publisher.send("render_report", str(execution_id))
    return len(sent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    name = f"biapp_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    vhost = name if rabbitmqctl("add_vhost", name) else None
    if vhost:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost or '%2F'}?heartbeat=60"
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    try:
        upgrade(db_url)
        settings = load_settings(
            {
                "BIAPP_DATABASE_URL": db_url,
                "BIAPP_BROKER_URL": amqp_url,
                "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
                "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
                "BIAPP_LOG_LEVEL": "WARNING",
            }
        )
        factory = make_session_factory(make_engine(db_url))
        broker = build_broker(settings)
        ctx = build_context(settings, BrokerPublisher(broker), session_factory=factory)
        fired = datetime.now(UTC).replace(second=0, microsecond=0)
        now = fired + timedelta(seconds=30)  # the tick comes 30 s after the due reports fired
        seed(factory, args.reports, args.due, fired)
        print(f"machine: {machine()}")
        print(f"{args.reports} active reports, {args.due} due; best and median of {args.repeat} ticks\n")

        ours, naive = [], []
        for _ in range(args.repeat):
            reset(factory, fired, amqp_url)
            started = time.perf_counter()
            count = len(dispatch_due_reports(ctx, now=now))
            ours.append(time.perf_counter() - started)
            assert count == args.due, count
            reset(factory, fired, amqp_url)
            started = time.perf_counter()
            count = naive_tick(ctx, now)
            naive.append(time.perf_counter() - started)
            assert count == args.due, count
        broker.close()

        width = 58
        print(f"{'':<{width}} {'best':>8} {'median':>8}")
        for label, times in (
            ("dispatcher tick (claim+insert+advance+commit+enqueue)", ours),
            ("naive loop (load all, check each in Python)", naive),
        ):
            print(f"{label:<{width}} {min(times):>7.3f}s {statistics.median(times):>7.3f}s")
        print(f"\nratio naive / dispatcher (median): {statistics.median(naive) / statistics.median(ours):.1f}x")
        target = "met" if statistics.median(ours) < 2 else "MISSED"
        print(f"target < 2 s for one tick: {target}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if vhost:
            rabbitmqctl("delete_vhost", vhost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
