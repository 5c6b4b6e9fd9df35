"""The dispatcher: turn due reports into executions, exactly once per occurrence.

Any number of scheduler replicas may run this at the same time. Rows are claimed
with FOR UPDATE SKIP LOCKED, the execution is unique per (report_id,
scheduled_for) and inserted ON CONFLICT DO NOTHING, next_run_at moves past now in
the same transaction, and messages go out only after the commit.

A tick works in batches of BIAPP_DISPATCH_BATCH_SIZE due reports, each its own short
transaction followed by its messages, so no transaction holds thousands of row locks
and the first runs start while later batches are still being claimed. On PostgreSQL a
batch is three statements whatever its size: one claim (an index range scan on the due
index, LIMIT, FOR UPDATE SKIP LOCKED, returning each report's schedule as text with its
destinations and unsubscribed addresses aggregated), one INSERT … SELECT FROM
json_to_recordset(…) ON CONFLICT DO NOTHING RETURNING and one UPDATE … FROM
json_to_recordset(…); each batch travels as one JSON parameter, which psycopg sends as is
(arrays of thousands of values are escaped element by element in Python). Next occurrences
are computed once per distinct (schedule, instant). A batch's messages go out in one
broker round trip (shared.messaging.publish_many_after_commit), on a thread of their own
while the next batch is being claimed. A crash between a commit and its publish leaves runs
`queued`: the sweeper re-enqueues them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.context import WorkerContext
from shared.db import transaction
from shared.executions import new_execution_row
from shared.executions.creation import LATE_AFTER
from shared.messaging import RENDER_REPORT, publish_many_after_commit
from shared.metrics import EXECUTIONS_QUEUED
from shared.models import Destination, ReportExecution, ScheduledReport, Unsubscription
from shared.schedules import next_run, parse_stored_schedule

log = logging.getLogger(__name__)

LOOKAHEAD = timedelta(seconds=60)  # runs due before the next tick start on the second
BATCH = 1000  # the default batch size (BIAPP_DISPATCH_BATCH_SIZE); the alert dispatcher uses it too


@dataclass(frozen=True)
class Dispatched:
    execution_id: uuid.UUID
    report_id: uuid.UUID
    scheduled_for: datetime
    delay_ms: int


@dataclass
class DispatchStats:
    """Where a tick's time went, in seconds per phase (summed over its batches).

    The phases of `phases()` follow each other on the tick's thread and add up to its total.
    Publishing runs alongside on a thread of its own once a tick has more than one batch:
    `publish_s` is the time spent there, `publish_wait_s` the part of it the tick waited for
    (a single batch published inline, or the last batches' messages after the last commit).
    """

    batches: int = 0
    claimed: int = 0
    created: int = 0
    published: int = 0
    claim_s: float = 0.0  # SELECT due rows FOR UPDATE SKIP LOCKED, with their destinations and unsubscriptions
    schedule_s: float = 0.0  # next occurrences and the execution rows
    insert_s: float = 0.0  # INSERT … ON CONFLICT DO NOTHING RETURNING
    advance_s: float = 0.0  # UPDATE next_run_at
    commit_s: float = 0.0
    publish_wait_s: float = 0.0  # the tick waiting for its messages to be confirmed
    publish_s: float = 0.0  # messages to the broker, confirmed (overlaps the phases above)
    total_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this process during the tick (the tick's and the publishing thread)
    occurrences: int = 0  # next occurrences computed (the rest came from the cache)
    batch_s: list[float] = field(default_factory=list)  # each batch's transaction, claim to commit

    def phases(self) -> dict[str, float]:
        return {
            "claim": self.claim_s,
            "schedule": self.schedule_s,
            "insert": self.insert_s,
            "advance": self.advance_s,
            "commit": self.commit_s,
            "publish_wait": self.publish_wait_s,
        }


class _Clock:
    """Adds the time since the last mark to one of the stats' phases."""

    def __init__(self, stats: DispatchStats):
        self.stats = stats
        self.last = time.perf_counter()

    def mark(self, phase: str) -> float:
        now = time.perf_counter()
        spent = now - self.last
        setattr(self.stats, phase, getattr(self.stats, phase) + spent)
        self.last = now
        return spent


def upsert_insert(session: Session):
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def following_occurrence(schedule: dict, due_at: datetime, now: datetime, *, what: str, extra: dict) -> datetime | None:
    """The next occurrence after this one; missed occurrences (downtime) collapse into the one being run.

    A schedule that can no longer be computed (e.g. a zone gone from tzdata) must not block
    every other one: it is stopped (None) and the reason logged.
    """
    try:
        return next_run(parse_stored_schedule(schedule), max(now, due_at))
    except ValueError as exc:
        log.error("%s stopped: its schedule is unusable: %s", what, exc, extra=extra)
        return None


class _Occurrences:
    """following_occurrence, computed once per distinct (schedule, instant) within a tick.

    Thousands of reports share a schedule ("daily 09:00 Europe/Berlin") and, due at the same
    minute, the same next occurrence. The key is the schedule's stored text, so a hit costs
    no parsing.
    """

    def __init__(self, now: datetime):
        self.now = now
        self.known: dict[tuple[str, datetime], datetime | None] = {}
        self.computed = 0

    def following(self, report: _Due) -> datetime | None:
        key = (report.schedule_key, max(self.now, report.next_run_at))
        if key not in self.known:
            self.computed += 1
            following = following_occurrence(
                report.schedule(), report.next_run_at, self.now, what="report", extra={"report_id": str(report.id)}
            )
            if following is None:
                return None  # logged per report, never cached: each stopped report says so
            self.known[key] = following
        return self.known[key]


class _Due(NamedTuple):
    """A claimed report: what its run and its next occurrence need, nothing more (a tuple: thousands a batch)."""

    id: uuid.UUID
    schedule_key: str  # the stored schedule as text (PostgreSQL) or canonical JSON
    next_run_at: datetime
    destinations: list
    unsubscribed: frozenset[str] | set[str]

    def schedule(self) -> dict:
        return json.loads(self.schedule_key)


class _DestinationRow(NamedTuple):
    """The columns of a destination that a run's plan reads (shared.destinations.planned): no secrets."""

    id: str
    position: int
    kind: str
    role: str | None
    address: str | None
    target: str | None


class _Publishing:
    """Sends committed batches' messages, on a thread of its own while the next batch is claimed.

    Only what is committed is submitted, so a crash loses at most messages of runs already
    `queued` in the database, which the sweeper re-enqueues. A tick of one batch publishes
    inline; `close` waits until every submitted batch has been sent (or refused and logged).
    """

    def __init__(self, publisher, stats: DispatchStats):
        self.publisher = publisher
        self.stats = stats
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def submit(self, created: list[Dispatched], *, more: bool) -> None:
        if not created:
            return
        if self.thread is None and not more:
            began = time.perf_counter()
            self._publish(created)
            self.stats.publish_wait_s += time.perf_counter() - began
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="dispatch-publish", daemon=True)
            self.thread.start()
        self.pending.put(created)

    def close(self) -> None:
        if self.thread is None:
            return
        began = time.perf_counter()
        self.pending.put(None)
        self.thread.join()
        self.thread = None
        self.stats.publish_wait_s += time.perf_counter() - began

    def _run(self) -> None:
        while (created := self.pending.get()) is not None:
            try:
                self._publish(created)
            except Exception:  # publish_many_after_commit logs refusals itself; anything else must not stop the rest
                log.exception("publishing %d runs failed; the sweeper re-enqueues runs left queued", len(created))

    def _publish(self, created: list[Dispatched]) -> None:
        began = time.perf_counter()
        self.stats.published += publish_many_after_commit(
            self.publisher, RENDER_REPORT, [(run.execution_id, run.delay_ms or None) for run in created]
        )
        self.stats.publish_s += time.perf_counter() - began


def dispatch_due_reports(
    ctx: WorkerContext, *, now: datetime | None = None, stats: DispatchStats | None = None
) -> list[tuple[uuid.UUID, int]]:
    """Claim due reports batch by batch: create executions, advance, commit, publish. Returns what was sent."""
    now = now or ctx.clock.now()
    stats = stats if stats is not None else DispatchStats()
    started, cpu = time.perf_counter(), time.process_time()
    size = ctx.settings.dispatch_batch_size
    occurrences = _Occurrences(now)
    dispatched: list[Dispatched] = []
    publishing = _Publishing(ctx.publisher, stats)
    try:
        while True:
            claimed, created = _claim_batch(ctx, now, size, occurrences, stats)
            publishing.submit(created, more=claimed == size)
            dispatched.extend(created)
            if claimed < size:
                break
    finally:
        publishing.close()  # what was committed goes out even when a later batch failed
    for run in dispatched:
        # A run claimed ahead of time (LOOKAHEAD) is not late: it starts on the second, after delay_ms.
        lag = max(0.0, (now - run.scheduled_for).total_seconds())
        extra = {"report_id": str(run.report_id), "execution_id": str(run.execution_id), "lag_s": round(lag, 3)}
        if lag > LATE_AFTER.total_seconds():
            log.warning("report was due %ds ago; running it once now", lag, extra=extra)
        elif not log.isEnabledFor(logging.INFO):
            continue
        elif run.delay_ms:
            log.info(
                "queued run scheduled for %s (starts in %.0fs)",
                run.scheduled_for.isoformat(),
                run.delay_ms / 1000,
                extra=extra,
            )
        else:
            log.info("queued run scheduled for %s", run.scheduled_for.isoformat(), extra=extra)
    stats.total_s += time.perf_counter() - started
    stats.cpu_s += time.process_time() - cpu
    stats.occurrences += occurrences.computed
    if dispatched:
        EXECUTIONS_QUEUED.labels("schedule").inc(len(dispatched))
        log.info(
            "dispatched %d executions in %.3fs (%d batches, %d distinct next occurrences)",
            len(dispatched),
            stats.total_s,
            stats.batches,
            occurrences.computed,
            extra={
                **{f"{phase}_s": round(spent, 4) for phase, spent in stats.phases().items()},
                "publish_s": round(stats.publish_s, 4),
            },
        )
    return [(run.execution_id, run.delay_ms) for run in dispatched]


def _claim_batch(
    ctx: WorkerContext, now: datetime, size: int, occurrences: _Occurrences, stats: DispatchStats
) -> tuple[int, list[Dispatched]]:
    """One transaction: lock up to `size` due reports, insert their executions, advance them."""
    began = time.perf_counter()
    clock = _Clock(stats)
    with transaction(ctx.session_factory) as session:
        due = _claim(session, now + LOOKAHEAD, size)
        clock.mark("claim_s")
        executions: list[dict] = []
        advances: list[tuple[uuid.UUID, datetime | None]] = []
        for report in due:
            following = occurrences.following(report)
            advances.append((report.id, following))
            if following is not None:
                executions.append(_execution_row(report, now))
        clock.mark("schedule_s")
        created = _insert_executions(session, executions, now)
        clock.mark("insert_s")
        _advance(session, advances)
        clock.mark("advance_s")
    clock.mark("commit_s")
    stats.batches += 1
    stats.claimed += len(due)
    stats.created += len(created)
    stats.batch_s.append(time.perf_counter() - began)
    return len(due), created


# One statement: the due index's range, LIMIT, FOR UPDATE SKIP LOCKED, and for each claimed report its
# destinations (ordered, the columns a plan reads) and unsubscribed addresses. The schedule comes back
# as text: the occurrence cache's key, parsed only when the cache misses.
_CLAIM = sa.text(
    """
    WITH due AS MATERIALIZED (
        SELECT r.id, r.schedule, r.next_run_at FROM scheduled_reports AS r
        WHERE r.is_active AND r.next_run_at <= :until
        ORDER BY r.next_run_at LIMIT :size
        FOR UPDATE SKIP LOCKED
    )
    SELECT due.id, CAST(due.schedule AS text) AS schedule, due.next_run_at,
        (SELECT json_agg(json_build_array(d.id, d.position, d.kind, d.role, d.address, d.target)
                         ORDER BY d.position)
         FROM destinations AS d WHERE d.report_id = due.id) AS destinations,
        (SELECT array_agg(u.address) FROM unsubscriptions AS u WHERE u.report_id = due.id) AS unsubscribed
    FROM due
    """
).columns(
    sa.column("id", sa.Uuid()),
    sa.column("schedule", sa.Text()),
    sa.column("next_run_at", sa.DateTime(timezone=True)),
    sa.column("destinations", postgresql.JSON()),
    sa.column("unsubscribed", postgresql.ARRAY(sa.Text())),
)


def _claim(session: Session, until: datetime, size: int) -> list[_Due]:
    """Lock up to `size` due reports (FOR UPDATE SKIP LOCKED, oldest first) with what their runs need."""
    if session.get_bind().dialect.name == "postgresql":
        return [
            _Due(
                row.id,
                row.schedule,
                row.next_run_at,
                [_DestinationRow(*d) for d in row.destinations or ()],
                frozenset(row.unsubscribed or ()),
            )
            for row in session.execute(_CLAIM, {"until": until, "size": size})
        ]
    due = session.execute(
        sa.select(ScheduledReport.id, ScheduledReport.schedule, ScheduledReport.next_run_at)
        .where(ScheduledReport.is_active.is_(True), ScheduledReport.next_run_at <= until)
        .order_by(ScheduledReport.next_run_at)
        .limit(size)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [report.id for report in due]
    destinations = _destinations_of(session, ids)
    gone = _unsubscribed_of(session, ids)
    return [
        _Due(
            report.id,
            json.dumps(report.schedule, sort_keys=True, default=str),
            report.next_run_at,
            destinations.get(report.id, []),
            gone.get(report.id, set()),
        )
        for report in due
    ]


def _advance(session: Session, advances: list[tuple[uuid.UUID, datetime | None]]) -> None:
    """Move every claimed report to its next occurrence: one UPDATE … FROM json_to_recordset on PostgreSQL."""
    if not advances:
        return
    table = ScheduledReport.__table__
    if session.get_bind().dialect.name == "postgresql":
        rows = [{"id": str(report_id), "at": at.isoformat() if at else None} for report_id, at in advances]
        session.execute(
            sa.text(
                "UPDATE scheduled_reports AS r SET next_run_at = v.at"
                " FROM json_to_recordset(CAST(:rows AS json)) AS v(id uuid, at timestamptz)"
                " WHERE r.id = v.id"
            ),
            {"rows": json.dumps(rows)},
        )
        return
    session.execute(
        sa.update(table).where(table.c.id == sa.bindparam("report_id")).values(next_run_at=sa.bindparam("following")),
        [{"report_id": report_id, "following": at} for report_id, at in advances],
    )


def _destinations_of(session: Session, report_ids: list) -> dict:
    """Each due report's destinations, in one query."""
    found: dict = {}
    if report_ids:
        # Plain rows with the columns a run's plan reads (shared.destinations.planned): no ORM objects, no secrets.
        rows = session.execute(
            sa.select(
                Destination.id,
                Destination.report_id,
                Destination.position,
                Destination.kind,
                Destination.role,
                Destination.address,
                Destination.target,
            )
            .where(_one_of(session, Destination.report_id, report_ids))
            .order_by(Destination.position)
        )
        for destination in rows:
            found.setdefault(destination.report_id, []).append(destination)
    return found


def _unsubscribed_of(session: Session, report_ids: list) -> dict:
    """Each due report's unsubscribed addresses (lower-case), in one query."""
    found: dict = {}
    if report_ids:
        rows = session.execute(
            sa.select(Unsubscription.report_id, Unsubscription.address).where(
                _one_of(session, Unsubscription.report_id, report_ids)
            )
        )
        for report_id, address in rows:
            found.setdefault(report_id, set()).add(address)
    return found


def _one_of(session: Session, column, values: list):
    """`column IN values`; on PostgreSQL as `= ANY(array)`, one parameter instead of one per value."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam("values", list(values), type_=postgresql.ARRAY(sa.Uuid())))
    return column.in_(values)


def _execution_row(report: _Due, now: datetime) -> dict:
    due = SimpleNamespace(id=report.id, destinations=report.destinations)
    return new_execution_row(
        due, trigger="schedule", scheduled_for=report.next_run_at, now=now, unsubscribed=report.unsubscribed
    )


def _insert_executions(session: Session, rows: list[dict], now: datetime) -> list[Dispatched]:
    """One INSERT … ON CONFLICT DO NOTHING; RETURNING says which rows are new (and ours to publish)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        inserted = set(session.execute(*_insert_from_json(rows)).scalars())
    else:
        statement = (
            sqlite.insert(ReportExecution.__table__)
            .on_conflict_do_nothing(
                index_elements=["report_id", "scheduled_for"], index_where=ReportExecution.trigger == "schedule"
            )
            .returning(ReportExecution.__table__.c.id)
        )
        inserted = set(session.execute(statement, rows).scalars())
    return [
        Dispatched(
            row["id"],
            row["report_id"],
            row["scheduled_for"],
            max(0, int((row["scheduled_for"] - now).total_seconds() * 1000)),
        )
        for row in rows
        if row["id"] in inserted
    ]


def _insert_from_json(rows: list[dict]) -> tuple[sa.TextClause, dict]:
    """INSERT … SELECT FROM json_to_recordset(one JSON document): a handful of parameters whatever the batch size.

    A multi-row VALUES list carries a dozen parameters per row, and arrays (one per column) are
    escaped element by element in Python by the driver; one JSON text is built by the json
    module's C encoder and read by the server with the column types named here. Columns with
    one value for the whole batch (status, queued_at, …) are one parameter each, not repeated
    in every row of the document.
    """
    table = ReportExecution.__table__
    dialect = postgresql.dialect()
    names = list(rows[0])
    first = rows[0]
    same = {
        name
        for name in names
        if not isinstance(table.c[name].type, sa.JSON) and all(row[name] == first[name] for row in rows)
    }
    varying = [name for name in names if name not in same]
    selected, params = [], {}
    for position, name in enumerate(names):
        kind = table.c[name].type.compile(dialect)
        if name in same:
            params[f"k{position}"] = first[name]
            selected.append(f"CAST(:k{position} AS {kind})")
        else:
            selected.append(f"v.{name}")
    types = ", ".join(f"{name} {table.c[name].type.compile(dialect)}" for name in varying)
    statement = sa.text(
        f"INSERT INTO {table.name} ({', '.join(names)})"
        f" SELECT {', '.join(selected)} FROM json_to_recordset(CAST(:rows AS json)) AS v({types})"
        " ON CONFLICT (report_id, scheduled_for) WHERE trigger = 'schedule' DO NOTHING"
        " RETURNING id"
    ).columns(sa.column("id", sa.Uuid()))
    # uuid and datetime values are written with str(): '…-…' and '2025-03-03 09:00:00+00:00' read back exactly.
    params["rows"] = json.dumps([{name: row[name] for name in varying} for row in rows], default=str)
    return statement, params
