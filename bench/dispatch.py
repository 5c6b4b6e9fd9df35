"""Dispatcher benchmark: one tick over 100,000 active reports (10,000 due in the same minute) on PostgreSQL + RabbitMQ.

    .venv/bin/python bench/dispatch.py [--reports 100000] [--due 10000] [--repeat 3] [--naive]

Each repetition makes the due reports fall due at one instant and runs our tick at that instant
(what periodiq does on the minute). It prints the tick's total time and where it went (claim the due
rows FOR UPDATE SKIP LOCKED with their destinations, compute next occurrences and execution rows,
INSERT … ON CONFLICT DO NOTHING RETURNING, UPDATE next_run_at, COMMIT, waiting for the last publish;
publishing itself runs on its own thread alongside and is shown apart), the process's CPU time for the
tick, and the start lag: from each execution's `scheduled_for` to the moment a renderer stand-in picked
its message up, split into the dispatcher's part (until the broker confirmed the message's batch) and
the stand-in's (from then until it picked the message). The stand-in is a separate process consuming
`biapp.renderer` with a large prefetch (as if enough renderer threads were free): it decodes each
Dramatiq message and marks its execution `running` with the time it was picked. `--naive` also times
the loop simple schedulers use (load every active report, ask each schedule in Python whether it fired,
insert and publish one by one) for comparison; it takes minutes at 100,000 reports.
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

from services.scheduler.dispatch import DispatchStats, dispatch_due_reports  # noqa: E402
from shared import users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.context import build_context  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.executions import planned_recipients  # noqa: E402
from shared.messaging import QUEUE_RENDERER, RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import ReportExecution, SavedQuery, ScheduledReport  # noqa: E402
from shared.schedules import next_run, parse_schedule  # noqa: E402

PG_ADMIN = os.environ.get("BIAPP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("BIAPP_BENCH_AMQP_HOST", "127.0.0.1")
TICK = timedelta(minutes=1)
# The due reports' schedules: a few distinct ones shared by thousands, as in real deployments.
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({model}){memory}, Python {platform.python_version()}"


def rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60).returncode == 0


def purge_queues(amqp_url: str) -> None:
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


class TimedPublisher(BrokerPublisher):
    """BrokerPublisher noting when each batch was confirmed, to split the start lag."""

    def __init__(self, broker):
        super().__init__(broker)
        self.confirmed: dict[str, datetime] = {}

    def send_many(self, actor_name, items):
        sent = super().send_many(actor_name, items)
        at = datetime.now(UTC)
        for object_id, _ in items:
            self.confirmed[str(object_id)] = at
        return sent


def schedule_at(i: int, at: datetime) -> dict:
    """One of a few schedules (daily or cron, in one of ZONES) that fires at `at`."""
    zone = ZONES[i % len(ZONES)]
    local = at.astimezone(__import__("zoneinfo").ZoneInfo(zone))
    if i % 2:
        return {"frequency": "cron", "cron": f"{local.minute} {local.hour} * * *", "timezone": zone}
    return {"frequency": "daily", "time": f"{local:%H:%M}", "timezone": zone}


def seed(factory, db_url: str, total: int, due: int, fired: datetime) -> None:
    """`total` active reports with one email destination each; `due` of them due at `fired`, the rest later."""
    with transaction(factory) as session:
        owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        owner_id, query_id = owner.id, query.id
    rows = []
    for i in range(total):
        at = fired if i < due else fired + timedelta(minutes=5 + (i % 1400))
        at = at.replace(second=0)
        rows.append((uuid.uuid4(), f"{'due' if i < due else 'later'} {i}", schedule_at(i, at), at))
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY scheduled_reports (id, owner_id, name, saved_query_id, schedule, timezone, formats, send_if_empty,"
            " csv_bom, is_active, next_run_at, created_at, updated_at) FROM STDIN"
        ) as copy:
            for report_id, name, schedule, at in rows:
                copy.write_row(
                    (
                        report_id,
                        owner_id,
                        name,
                        query_id,
                        psycopg.types.json.Jsonb(schedule),
                        schedule["timezone"],
                        psycopg.types.json.Jsonb(["csv"]),
                        True,
                        False,
                        True,
                        at,
                        fired,
                        fired,
                    )
                )
        cur.execute(
            "INSERT INTO destinations (id, report_id, position, kind, role, address, target, created_at, updated_at)"
            " SELECT gen_random_uuid(), id, 0, 'email', 'to', 'r' || name || '@example.com',"
            " 'r' || name || '@example.com', now(), now() FROM scheduled_reports"
        )
        cur.execute("ANALYZE")


def make_due(factory, at: datetime, amqp_url: str) -> None:
    """Forget earlier runs and make the due reports due at `at` again."""
    with transaction(factory) as session:
        session.execute(sa.delete(ReportExecution))
        session.execute(sa.update(ScheduledReport).where(ScheduledReport.name.like("due %")).values(next_run_at=at))
    purge_queues(amqp_url)


def naive_tick(ctx, now: datetime) -> int:
    """What simple schedulers do: load everything, evaluate every schedule in Python, one by one."""
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
                    .on_conflict_do_nothing()
                ).rowcount
                if inserted:
                    sent.append(execution_id)
    for execution_id in sent:
        ctx.publisher.send(RENDER_REPORT, str(execution_id))
    return len(sent)


def consume(db_url: str, amqp_url: str) -> None:
    """The renderer stand-in: picks each message, records when, marks its execution running (batched writes)."""
    import dramatiq

    conn = psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=2000)
    picked: list[tuple[str, datetime]] = []
    last_tag = [0]

    def flush() -> None:
        if not picked:
            return
        conn.execute(
            "UPDATE report_executions AS e SET status = 'running', started_at = v.at"
            " FROM unnest(%s::uuid[], %s::timestamptz[]) AS v(id, at) WHERE e.id = v.id AND e.status = 'queued'",
            ([p[0] for p in picked], [p[1] for p in picked]),
        )
        channel.basic_ack(last_tag[0], multiple=True)
        picked.clear()

    def on_message(_channel, method, _properties, body) -> None:
        at = datetime.now(UTC)
        message = dramatiq.Message.decode(body)
        assert message.actor_name == RENDER_REPORT, message.actor_name
        picked.append((message.args[0], at))
        last_tag[0] = method.delivery_tag
        if len(picked) >= 500:
            flush()

    channel.basic_consume(QUEUE_RENDERER, on_message)
    while True:
        connection.process_data_events(time_limit=0.05)
        flush()


def wait_started(factory, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            started = session.execute(
                sa.select(sa.func.count()).where(ReportExecution.started_at.is_not(None))
            ).scalar_one()
        if started >= count:
            return
        time.sleep(0.2)
    raise SystemExit(f"only {started} of {count} executions were picked up within {timeout:.0f}s")


def start_lags(factory, confirmed: dict[str, datetime]) -> tuple[list[float], list[float], list[float]]:
    """Sorted lags: scheduled_for -> picked, scheduled_for -> batch confirmed, batch confirmed -> picked."""
    with factory() as session:
        rows = session.execute(
            sa.select(ReportExecution.id, ReportExecution.scheduled_for, ReportExecution.started_at)
        ).all()
    total = sorted((started - scheduled).total_seconds() for _, scheduled, started in rows)
    dispatcher = sorted((confirmed[str(i)] - scheduled).total_seconds() for i, scheduled, _ in rows)
    consumer = sorted((started - confirmed[str(i)]).total_seconds() for i, _, started in rows)
    return total, dispatcher, consumer


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="BIAPP_DISPATCH_BATCH_SIZE (default: its default)")
    parser.add_argument("--naive", action="store_true", help="also time the naive loop")
    parser.add_argument("--consume", nargs=2, metavar=("DB_URL", "AMQP_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(*args.consume)
        return 0

    name = f"biapp_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    vhost = name if rabbitmqctl("add_vhost", name) else None
    if vhost:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost or '%2F'}?heartbeat=60"
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    consumer = None
    try:
        upgrade(db_url)
        env = {
            "BIAPP_DATABASE_URL": db_url,
            "BIAPP_BROKER_URL": amqp_url,
            "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_LOG_LEVEL": "WARNING",
        }
        if args.batch_size:
            env["BIAPP_DISPATCH_BATCH_SIZE"] = str(args.batch_size)
        settings = load_settings(env)
        factory = make_session_factory(make_engine(db_url))
        broker = build_broker(settings)
        publisher = TimedPublisher(broker)
        ctx = build_context(settings, publisher, session_factory=factory)
        first = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        seed(factory, db_url, args.reports, args.due, first)
        print(f"machine: {machine()}")
        print(
            f"{args.reports} active reports, {args.due} due at one instant, batch size {settings.dispatch_batch_size}"
        )
        print(f"seeded in {time.perf_counter() - started:.1f}s; {args.repeat} ticks\n")
        broker.declare_queue(QUEUE_RENDERER, ensure=True)  # the stand-in consumes what the dispatcher publishes
        consumer = subprocess.Popen([sys.executable, __file__, "--consume", db_url, amqp_url])

        ticks: list[DispatchStats] = []
        lags: list[tuple[list[float], list[float], list[float]]] = []
        for _ in range(args.repeat):
            purge_queues(amqp_url)
            publisher.confirmed.clear()
            due_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
            make_due(factory, due_at, amqp_url)
            time.sleep(max(0.0, (due_at - datetime.now(UTC)).total_seconds()))
            stats = DispatchStats()
            count = len(dispatch_due_reports(ctx, stats=stats))
            assert count == args.due, count
            ticks.append(stats)
            wait_started(factory, args.due)
            lags.append(start_lags(factory, publisher.confirmed))

        naive: list[float] = []
        if args.naive:
            consumer.terminate()
            consumer.wait()
            consumer = None
            for _ in range(args.repeat):
                now = datetime.now(UTC).replace(microsecond=0)
                make_due(factory, now, amqp_url)
                with transaction(factory) as session:  # due reports fired a moment ago, at the minute
                    session.execute(
                        sa.update(ScheduledReport)
                        .where(ScheduledReport.name.like("due %"))
                        .values(next_run_at=now + timedelta(days=1))
                    )
                began = time.perf_counter()
                naive_tick(ctx, now)
                naive.append(time.perf_counter() - began)
        broker.close()

        median = sorted(ticks, key=lambda s: s.total_s)[len(ticks) // 2]
        print(f"{'dispatcher tick':<44} {'best':>8} {'median':>8}   (median tick's breakdown)")
        totals = [s.total_s for s in ticks]
        print(f"{'  total':<44} {min(totals):>7.3f}s {statistics.median(totals):>7.3f}s")
        for phase, spent in median.phases().items():
            best = min(s.phases()[phase] for s in ticks)
            print(f"{'  ' + phase:<44} {best:>7.3f}s {spent:>7.3f}s   {100 * spent / median.total_s:>4.0f}%")
        other = median.total_s - sum(median.phases().values())
        print(f"{'  other (logging, loop)':<44} {'':>8} {other:>7.3f}s")
        print(
            f"{'  publish (own thread, overlapped)':<44} {min(s.publish_s for s in ticks):>7.3f}s"
            f" {median.publish_s:>7.3f}s"
        )
        print(
            f"{'  CPU time of the process':<44} {min(s.cpu_s for s in ticks):>7.3f}s {median.cpu_s:>7.3f}s"
            f"   ({100 * median.cpu_s / median.total_s:.0f}% of one CPU)"
        )
        print(
            f"  {median.batches} batches; {median.occurrences} next occurrences computed for {median.claimed} reports;"
            f" longest batch transaction {max(max(s.batch_s) for s in ticks):.3f}s (claim to commit)"
        )
        target = "met" if statistics.median(totals) < 5 else "MISSED"
        print(f"target < 5 s for one tick: {target}\n")

        print("start lag (scheduled_for -> picked up by a renderer stand-in), per tick:")
        for number, (values, dispatcher, picked) in enumerate(lags, start=1):
            print(
                f"  tick {number}: p50 {percentile(values, 0.5):.3f}s  p95 {percentile(values, 0.95):.3f}s"
                f"  max {values[-1]:.3f}s  ({len(values)} runs)"
            )
            print(
                f"          until confirmed by the broker p50 {percentile(dispatcher, 0.5):.3f}s"
                f" p95 {percentile(dispatcher, 0.95):.3f}s; then until picked p50 {percentile(picked, 0.5):.3f}s"
                f" p95 {percentile(picked, 0.95):.3f}s"
            )
        p95 = statistics.median(percentile(values, 0.95) for values, _, _ in lags)
        print(f"target p95 <= 5 s: {'met' if p95 <= 5 else 'MISSED'} (median p95 {p95:.3f}s)")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if naive:
            print(f"\nnaive loop (load all, check each in Python, one by one): median {statistics.median(naive):.3f}s")
            print(f"ratio naive / dispatcher (median): {statistics.median(naive) / statistics.median(totals):.1f}x")
    finally:
        if consumer is not None:
            consumer.terminate()
            consumer.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if vhost:
            rabbitmqctl("delete_vhost", vhost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
