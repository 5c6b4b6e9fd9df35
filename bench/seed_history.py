"""A long history on PostgreSQL: reports, executions, deliveries, artifact rows and alert events.

    .venv/bin/python bench/seed_history.py [--small] [--reports 10000] [--executions 1000000] [--keep]

Creates a database of its own (dropped at the end unless `--keep`, which prints its URL), migrates it and
fills it with INSERT … SELECT generate_series, then VACUUM ANALYZE. The default sizes: 10,000 reports,
1,000,000 executions over a year (one report holding 100,000 of them, the rest spread), 3 deliveries and
2 artifact rows (metadata only, no bytes) per execution, 100 alerts with 100,000 evaluations (one alert
holding half). Other benchmarks import `seed` (fill an existing, migrated database) or `seeded_database`.
Needs PostgreSQL (BIAPP_BENCH_PG_ADMIN, default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from shared import users  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.models import SavedQuery  # noqa: E402

PG_ADMIN = os.environ.get("BIAPP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct horse battery"
ADMIN_EMAIL = "admin@example.com"
OWNER_EMAIL = "owner@example.com"  # owns every report but the last tenth
OTHER_EMAIL = "other@example.com"  # owns the last tenth


@dataclass(frozen=True)
class Seeded:
    big_report_id: str  # the report holding `big` executions (named "Report 00001")
    big_alert_id: str  # the alert holding half the events
    reports: int
    executions: int
    deliveries: int
    artifacts: int
    events: int
    seconds: float


SMALL = {"reports": 200, "executions": 20_000, "big": 5_000, "alerts": 10, "events": 4_000}


def _statements(reports: int, executions: int, big: int, deliveries: int, artifacts: int, alerts: int, events: int):
    spread = max(executions - big, 0)
    others = max(reports - 1, 1)
    yield f"""
        CREATE TEMP TABLE seed_reports ON COMMIT DROP AS
        SELECT g AS n, gen_random_uuid() AS id,
               CASE WHEN g > {reports} - {reports} / 10 THEN :other ELSE :owner END AS owner_id
        FROM generate_series(1, {reports}) g"""
    yield """
        INSERT INTO scheduled_reports (id, owner_id, name, saved_query_id, schedule, timezone, formats, subject,
            send_if_empty, csv_bom, csv_separator, locale, send_only_if_changed, is_active, next_run_at,
            created_at, updated_at)
        SELECT id, owner_id, 'Report ' || lpad(n::text, 5, '0'), :query,
               '{"frequency": "daily", "time": "09:00", "timezone": "UTC"}', 'UTC', '["csv", "xlsx"]',
               'Report {{date}}', true, false, ',', 'en-US', false, n % 7 <> 0,
               CASE WHEN n % 7 <> 0 THEN date_trunc('day', now()) + interval '1 day 9 hours' END, now(), now()
        FROM seed_reports"""
    yield """
        INSERT INTO destinations (id, report_id, kind, position, address, target, role, created_at, updated_at)
        SELECT gen_random_uuid(), id, 'email', 0, 'team' || n || '@example.com', 'team' || n || '@example.com',
               'to', now(), now()
        FROM seed_reports"""
    # One report holds `big` runs, the others share the rest; a year of runs, mostly scheduled and good.
    yield f"""
        INSERT INTO report_executions (id, report_id, trigger, status, scheduled_for, queued_at, started_at,
            finished_at, row_count, truncated, attempts, late, error, enqueue_count, last_enqueued_at, recipients)
        SELECT gen_random_uuid(), r.id,
               CASE WHEN g % 10 = 0 THEN 'manual' WHEN g % 10 = 1 THEN 'test' ELSE 'schedule' END,
               CASE WHEN g % 20 = 2 THEN 'failed' WHEN g % 20 = 3 THEN 'partial' WHEN g % 20 = 4 THEN 'skipped'
                    ELSE 'success' END,
               t.at, t.at, t.at + interval '1 second', t.at + interval '7 seconds', g % 5000, false, 1, false,
               CASE WHEN g % 20 = 2 THEN 'The query timed out.' END, 1, t.at, '[]'
        FROM generate_series(1, {big + spread}) g
        CROSS JOIN LATERAL (SELECT now() - interval '365 days' * ((g::bigint * 7919) % {executions} + random())
                                   / {executions} AS at) t
        JOIN seed_reports r ON r.n = CASE WHEN g <= {big} THEN 1 ELSE 2 + g % {others} END"""
    yield f"""
        INSERT INTO deliveries (id, execution_id, recipient, kind, channel, status, attempts, answer, sent_at,
            updated_at)
        SELECT gen_random_uuid(), e.id, 'person' || k || '@example.com', CASE WHEN k = 3 THEN 'cc' ELSE 'to' END,
               'email', CASE WHEN e.status = 'partial' AND k = 1 THEN 'failed' ELSE 'sent' END, 1,
               '250 2.0.0 OK', e.finished_at, e.finished_at
        FROM report_executions e CROSS JOIN generate_series(1, {deliveries}) k"""
    yield f"""
        INSERT INTO artifacts (id, execution_id, format, filename, content_type, size, sha256, storage, location,
            created_at, expires_at, purged_at)
        SELECT gen_random_uuid(), e.id, f.format, 'report.' || f.format, f.content_type, 10000 + e.row_count * 40,
               md5(e.id::text) || md5(f.format), 'database', NULL, e.finished_at,
               e.finished_at + interval '30 days',
               CASE WHEN e.finished_at < now() - interval '30 days' THEN e.finished_at + interval '30 days' END
        FROM report_executions e
        CROSS JOIN (VALUES (1, 'csv', 'text/csv'),
                           (2, 'xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
                           (3, 'pdf', 'application/pdf')) AS f (k, format, content_type)
        WHERE f.k <= {artifacts}"""
    yield f"""
        CREATE TEMP TABLE seed_alerts ON COMMIT DROP AS
        SELECT g AS n, gen_random_uuid() AS id FROM generate_series(1, {max(alerts, 1)}) g"""
    yield """
        INSERT INTO alerts (id, owner_id, name, saved_query_id, condition, schedule, timezone, notify,
            notify_on_recovery, notify_on_error, is_active, created_at, updated_at)
        SELECT id, :owner, 'Alert ' || lpad(n::text, 4, '0'), :query,
               '{"kind": "row_count", "op": "gt", "value": 0}',
               '{"frequency": "cron", "cron": "*/15 * * * *", "timezone": "UTC"}', 'UTC', 'on_change', false, false,
               true, now(), now()
        FROM seed_alerts"""
    yield f"""
        INSERT INTO alert_events (id, alert_id, trigger, scheduled_for, queued_at, enqueue_count, evaluated_at, state,
            row_count, notified)
        SELECT gen_random_uuid(), a.id, CASE WHEN g % 10 = 0 THEN 'manual' ELSE 'schedule' END, t.at, t.at, 1,
               t.at + interval '2 seconds', CASE WHEN g % 9 = 0 THEN 'true' WHEN g % 31 = 0 THEN 'error'
               ELSE 'false' END, g % 100, g % 9 = 0
        FROM generate_series(1, {events}) g
        CROSS JOIN LATERAL (SELECT now() - interval '365 days' * ((g::bigint * 7919) % {events} + random())
                                   / {events} AS at) t
        JOIN seed_alerts a ON a.n = CASE WHEN g <= {events} / 2 THEN 1 ELSE 1 + g % {max(alerts, 1)} END"""


def seed(
    url: str,
    *,
    reports: int = 10_000,
    executions: int = 1_000_000,
    big: int = 100_000,
    deliveries: int = 3,
    artifacts: int = 2,
    alerts: int = 100,
    events: int = 100_000,
    analyze: bool = True,
) -> Seeded:
    """Fill the migrated, empty database at `url` (a SQLAlchemy URL) and return what was made.

    Users: ADMIN_EMAIL (admin), OWNER_EMAIL and OTHER_EMAIL (analysts), all with PASSWORD.
    """
    started = time.perf_counter()
    big = min(big, executions)
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            users.create_user(session, email=ADMIN_EMAIL, password=PASSWORD, role="admin")
            owner = users.create_user(session, email=OWNER_EMAIL, password=PASSWORD, role="analyst")
            other = users.create_user(session, email=OTHER_EMAIL, password=PASSWORD, role="analyst")
            query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
            session.add(query)
            session.flush()
            names = {"owner": owner.id, "other": other.id, "query": query.id}
            session.execute(sa.text("SET LOCAL synchronous_commit = off"))
            session.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
            for statement in _statements(reports, executions, big, deliveries, artifacts, alerts, events):
                wanted = {key: value for key, value in names.items() if f":{key}" in statement}
                session.execute(sa.text(statement), wanted)
            big_report = session.execute(sa.text("SELECT id FROM seed_reports WHERE n = 1")).scalar_one()
            big_alert = session.execute(sa.text("SELECT id FROM seed_alerts WHERE n = 1")).scalar_one()
        if analyze:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in ("scheduled_reports", "report_executions", "deliveries", "artifacts", "alert_events"):
                    conn.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
    finally:
        engine.dispose()
    return Seeded(
        str(big_report),
        str(big_alert),
        reports,
        executions,
        executions * deliveries,
        executions * artifacts,
        events,
        time.perf_counter() - started,
    )


def app_url(database: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{database}"


def create_database(name: str) -> str:
    """An empty, migrated database; its SQLAlchemy URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = app_url(name)
    upgrade(url)
    return url


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def seeded_database(name: str | None = None, *, keep: bool = False, **sizes) -> Iterator[tuple[str, Seeded]]:
    """A database of its own, migrated and seeded (`sizes` as for `seed`); dropped afterwards unless `keep`."""
    name = name or f"biapp_history_{os.getpid()}"
    url = create_database(name)
    try:
        yield url, seed(url, **sizes)
    finally:
        if not keep:
            drop_database(name)


def size_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small", action="store_true", help=f"a quick run: {SMALL}")
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=100_000, help="executions of the one long report")
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--events", type=int, default=100_000)


def sizes_from(args: argparse.Namespace) -> dict:
    sizes = {key: getattr(args, key) for key in ("reports", "executions", "big", "alerts", "events")}
    return {**sizes, **SMALL} if args.small else sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size_arguments(parser)
    parser.add_argument("--keep", action="store_true", help="keep the database and print its URL")
    parser.add_argument("--name", default=None, help="the database's name (default biapp_history_<pid>)")
    args = parser.parse_args()
    with seeded_database(args.name, keep=args.keep, **sizes_from(args)) as (url, seeded):
        print(
            f"{seeded.reports:,} reports, {seeded.executions:,} executions, {seeded.deliveries:,} deliveries, "
            f"{seeded.artifacts:,} artifact rows, {seeded.events:,} alert events in {seeded.seconds:.1f} s"
        )
        if args.keep:
            print(f"kept: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
