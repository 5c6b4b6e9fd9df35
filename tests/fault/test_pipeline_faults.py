"""Faults under the whole pipeline: real `biapp` renderer, mailer and scheduler processes, real SMTP.

The application database is a PostgreSQL cluster of the test's own (tests/fault/conftest.py), so it
can be restarted and stopped; the machine's shared PostgreSQL only holds the data the reports read
(`pg_data_database`, through a SELECT-only login) and is never stopped. The broker is the shared
RabbitMQ, in a vhost of the test session's own: no scenario here stops it (test_broker_outage.py does,
on a private node). Mail goes to an aiosmtpd server on a fixed loopback port that can be stopped and
started again, and that records every message it accepts *before* it answers `250`, as a real MTA
queues a message before it says so.

Each scenario asserts what the pipeline promises (shared/executions, services/mailer/deliver.py):

* every occurrence ends `success` (late is allowed);
* one copy per (execution, recipient), counted from what the SMTP server received (each copy has
  one recipient; its Message-ID names the delivery row). The only duplicate allowed is the
  documented window: a mailer killed between the server's `250` and the ledger write sends that one
  copy again, with the same Message-ID; so at most one per SIGKILL of a mailer, and none elsewhere;
* no run is left `queued`, `running`, `rendered` or `sending`, no delivery `pending`;

and prints its recovery time and copy counts (`pytest -s`): from the end of the fault (the database
or the SMTP server back) or from the SIGKILL (a replacement is started at once) to the moment every
run has finished.

`make test`: PostgreSQL restarted mid-render and mid-send; PostgreSQL down 15 s while sending;
SIGKILL of the mailer mid-send; SIGKILL of the renderer mid-render (about 90 s together).
`make chaos`: the 15 s outage ending just before the sweeper's tick; SMTP down 45 s (longer than the
old retry budget); every process of the scheduler SIGKILLed mid-dispatch; the mailer SIGKILLed three
times in one send.

Time settings are shortened: BIAPP_LEASE_TTL_S=6 (a dead worker's run is taken over within 6 s),
BIAPP_SMTP_TIMEOUT_S=5, BIAPP_MAX_BACKOFF_S=2 (tests/support.py; 5 in the SMTP scenario, with
BIAPP_MAIL_RETRY_WINDOW_S=120), BIAPP_STUCK_QUEUED_AFTER_S=10.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pika
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from shared.db import make_engine, make_session_factory, transaction
from shared.db.migrate import upgrade
from shared.executions import create_execution
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER, RENDER_REPORT, BrokerPublisher, build_broker
from shared.models import Delivery, ReportExecution, ScheduledReport
from tests.fault.conftest import service_port
from tests.fault.support import current_children, start_scheduler
from tests.integration.seeding import add_report, seed_query
from tests.support import Process, base_env, free_port, make_settings, wait_until

LEASE_TTL_S = 6
UNFINISHED = ("queued", "running", "rendered", "sending")
# Streams for ~4 s from the data database (pg_sleep is allowed by the SQL guard): long enough to
# restart the application database or kill the renderer while the rows are still coming.
SLOW_SQL = "select g as n, pg_sleep(0.01) as pause from generate_series(1, 400) g"
FAST_SQL = "select g as n from generate_series(1, 20) g"
MESSAGE_ID = re.compile(r"<biapp\.([0-9a-f-]{36})@")


# --- SMTP: a real server that can go away and come back on the same port --------------------------


@dataclass
class Copy:
    recipients: list[str]
    message_id: str
    at: float  # time.monotonic() when the server accepted it


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps every message it accepts, then takes `delay_s` before it says `250`."""

    delay_s: float = 0.0
    copies: list[Copy] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.copies.append(Copy(list(envelope.rcpt_tos), str(message["Message-ID"]), time.monotonic()))
        if self.delay_s:
            # The message is accepted; a client killed now never learns it (the documented window).
            await asyncio.sleep(self.delay_s)
        return "250 OK"


class SmtpServer:
    """An aiosmtpd server on a fixed port below the ephemeral range, so it can be stopped and restarted."""

    host = "127.0.0.1"

    def __init__(self, delay_s: float = 0.0):
        self.port = service_port()
        self.mailbox = Mailbox(delay_s=delay_s)
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname=self.host, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def copies(self) -> list[Copy]:
        with self.mailbox.lock:
            return list(self.mailbox.copies)

    def count(self) -> int:
        with self.mailbox.lock:
            return len(self.mailbox.copies)


# --- The pipeline: processes started as an operator starts them ------------------------------------


def consumers(amqp_url: str, queue: str) -> int:
    quiet = logging.getLogger("pika.channel")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a queue not declared yet is logged as a warning by pika
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # not declared yet
    finally:
        quiet.setLevel(level)
        if connection.is_open:
            connection.close()


class Pipeline:
    """A migrated application database on the private cluster, seeded reports, and `biapp` processes."""

    def __init__(self, cluster, amqp_url: str, data, smtp: SmtpServer, tmp_path, **settings: str):
        self.cluster = cluster
        self.amqp_url = amqp_url
        self.data = data
        self.smtp = smtp
        self.tmp_path = tmp_path
        self.url = cluster.create_database("biapp")
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.factory = make_session_factory(self.engine)
        self.env = base_env(
            BIAPP_DATABASE_URL=self.url,
            BIAPP_BROKER_URL=amqp_url,
            BIAPP_LOG_FORMAT="json",
            BIAPP_LEASE_TTL_S=str(LEASE_TTL_S),
            BIAPP_SMTP_TIMEOUT_S="5",
            BIAPP_STUCK_QUEUED_AFTER_S="10",
            **settings,
        )
        self.settings = make_settings(**self.env)
        self.broker = build_broker(self.settings)
        self.publisher = BrokerPublisher(self.broker)
        self.processes: list[Process] = []
        self.killed: set[int] = set()  # pids of processes this test killed on purpose
        self.owner = self.query = self.sql = None

    # seeding

    def report(
        self, sql: str, recipients: list[str], *, due: datetime | None = None, name: str = "Report"
    ) -> uuid.UUID:
        """A daily report reading `sql` (csv), mailed to `recipients`; `due` sets its next occurrence.

        The first call seeds the owner, the data source, the query and the SMTP settings."""
        if self.query is None:
            self.owner, self.query = seed_query(self.factory, self.data, self.settings, sql=sql, smtp=self.smtp)
            self.sql = sql
        assert sql == self.sql, "one query per pipeline"
        with transaction(self.factory) as session:
            report = add_report(
                session, self.owner, self.query, now=datetime.now(UTC), name=name, recipients=recipients
            )
            if due is not None:
                report.next_run_at = due
            return report.id

    def run_now(self, report_id: uuid.UUID) -> uuid.UUID:
        """A manual run, as the API's "run now" makes it: the row, then the message."""
        with transaction(self.factory) as session:
            report = session.get(ScheduledReport, report_id)
            execution = create_execution(session, report, trigger="manual", now=datetime.now(UTC))
        self.publisher.send(RENDER_REPORT, str(execution.id))
        return execution.id

    # processes

    def start(self, service: str, threads: int = 2) -> Process:
        """`biapp worker <service>` (renderer, mailer) or `biapp scheduler`, each with its own metrics port."""
        n = len(self.processes)
        if service == "scheduler":
            directory = self.tmp_path / f"scheduler-{n}"
            directory.mkdir()
            process = start_scheduler(self.env, directory)
        else:
            prom = self.tmp_path / f"prom-{n}"
            prom.mkdir()
            env = {**self.env, "dramatiq_prom_port": str(free_port()), "dramatiq_prom_db": str(prom)}
            # One Dramatiq master (a renderer pod's `--lane main`): SIGKILL of its group kills the work in progress.
            lane = ["--lane", "main"] if service == "renderer" else []
            process = Process(
                ["worker", service, *lane, "--processes", "1", "--threads", str(threads)],
                env,
                log=self.tmp_path / f"{service}-{n}.log",
            )
        self.processes.append(process)
        return process

    def wait_consuming(self, queue: str, count: int = 1) -> None:
        wait_until(lambda: consumers(self.amqp_url, queue) >= count, timeout=60, what=f"a consumer on {queue}")

    def sigkill(self, process: Process) -> None:
        """SIGKILL a worker: the dramatiq master and its worker processes (one process group) die at once."""
        self.killed.add(process.proc.pid)
        process.signal(signal.SIGKILL)
        process.proc.wait(10)

    def sigkill_scheduler(self, scheduler: Process) -> None:
        """SIGKILL every process of a `biapp scheduler`: each child leads a group of its own, then the supervisor."""
        children = current_children(scheduler)
        for pid in children.values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.sigkill(scheduler)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.proc.pid not in self.killed and process.proc.poll() is not None:
                raise AssertionError(f"{process.proc.args[1:]} exited ({process.proc.returncode}):\n{self.logs()}")

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {process.log_path.name}\n" + "\n".join(process.output().splitlines()[-lines:])
            for process in self.processes
        )

    # observing

    def status(self, execution_id: uuid.UUID) -> str | None:
        try:
            with self.factory() as session:
                return session.scalar(sa.select(ReportExecution.status).where(ReportExecution.id == execution_id))
        except sa.exc.OperationalError:
            return None  # the database is down right now

    def wait_status(self, execution_id: uuid.UUID, statuses: tuple[str, ...], timeout: float = 60) -> str:
        def reached():
            self.check_alive()
            return self.status(execution_id) in statuses and self.status(execution_id)

        return wait_until(reached, timeout=timeout, interval=0.05, what=f"{execution_id} to be {statuses}")

    def wait_copies(self, count: int, timeout: float = 60) -> None:
        def enough():
            self.check_alive()
            return self.smtp.count() >= count

        wait_until(enough, timeout=timeout, interval=0.02, what=f"{count} copies at the SMTP server")

    def wait_all_finished(self, timeout: float = 120) -> float:
        """Until no run is unfinished (and at least one exists); returns time.monotonic() at that moment."""

        def finished():
            self.check_alive()
            try:
                with self.factory() as session:
                    statuses = session.scalars(sa.select(ReportExecution.status)).all()
            except sa.exc.OperationalError:
                return False
            return bool(statuses) and not any(status in UNFINISHED for status in statuses)

        try:
            wait_until(finished, timeout=timeout, interval=0.1, what="every run to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}\n{self.logs()}") from None
        return time.monotonic()

    def describe(self) -> str:
        with self.factory() as session:
            rows = session.execute(
                sa.select(ReportExecution.id, ReportExecution.status, ReportExecution.attempts, ReportExecution.error)
            ).all()
        return "\n".join(f"{row.id} {row.status} attempts={row.attempts} {row.error or ''}" for row in rows)

    def verdict(self, scenario: str, *, duplicates_allowed: int = 0, expected_runs: int | None = None) -> dict:
        """Assert every run succeeded, nothing is left unfinished, and count copies per (execution, recipient)."""
        with self.factory() as session:
            runs = session.scalars(sa.select(ReportExecution)).all()
            deliveries = {d.id: d for d in session.scalars(sa.select(Delivery))}
        if expected_runs is not None:
            assert len(runs) == expected_runs, self.describe()
        assert not [run for run in runs if run.status in UNFINISHED], self.describe()
        assert all(run.status == "success" for run in runs), f"{self.describe()}\n{self.logs()}"
        assert all(d.status == "sent" for d in deliveries.values())

        copies: dict[tuple[uuid.UUID, str], list[str]] = defaultdict(list)
        for copy in self.smtp.copies():
            assert len(copy.recipients) == 1, copy  # one recipient per copy: nobody sees the others
            match = MESSAGE_ID.search(copy.message_id)
            assert match, copy.message_id
            delivery = deliveries[uuid.UUID(match.group(1))]
            assert delivery.recipient == copy.recipients[0]
            copies[(delivery.execution_id, delivery.recipient)].append(copy.message_id)
        planned = {(run.id, planned["address"]) for run in runs for planned in run.recipients}
        assert set(copies) == planned, "every planned recipient of every run got the report"
        assert {(d.execution_id, d.recipient) for d in deliveries.values()} == planned
        twice = {key: ids for key, ids in copies.items() if len(ids) > 1}
        extra = sum(len(ids) - 1 for ids in copies.values())
        for ids in twice.values():
            assert len(set(ids)) == 1, f"a second copy must carry the first one's Message-ID: {ids}"
        figures = {
            "runs": len(runs),
            "recipients": len(planned),
            "copies": sum(len(ids) for ids in copies.values()),
            "duplicates": extra,
            "late": sum(run.late for run in runs),
            "attempts": max(run.attempts for run in runs),
        }
        print(
            f"[{scenario}] {figures['runs']} run(s) success, {figures['copies']} copies for {figures['recipients']} "
            f"(execution, recipient) pairs, {extra} duplicate(s), {figures['late']} late"
            + (f" ({', '.join(r for _, r in twice)}, same Message-ID)" if twice else "")
        )
        assert extra <= duplicates_allowed, f"{extra} duplicate copies: {twice}"
        return figures

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.broker.close()
        self.engine.dispose()


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(private_postgres, amqp, pg_data_database, smtp, tmp_path):
    """A factory: pipeline(**settings) -> Pipeline on the private cluster; every process stopped afterwards."""
    made: list[Pipeline] = []

    def make(**settings: str) -> Pipeline:
        made.append(Pipeline(private_postgres, amqp, pg_data_database, smtp, tmp_path, **settings))
        return made[-1]

    yield make
    for pipe in made:
        pipe.close()


def recipients(n: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}{i:02d}@example.com" for i in range(1, n + 1)]


def report_recovery(scenario: str, what: str, seconds: float) -> None:
    print(f"[{scenario}] recovery: {seconds:.1f}s {what}")


# --- make test ------------------------------------------------------------------------------------


def test_postgres_restarted_mid_render_and_mid_send(pipeline, private_postgres, smtp):
    """The application database restarts twice under one run: while the renderer streams the rows
    (a clean `fast` restart), then while the mailer sends (an `immediate` one: a crash, recovery at start).
    Both workers stay up; the render stores its files and the send records every accepted copy once
    the database is back, and nobody gets a second copy."""
    scenario = "postgres restarted mid-render and mid-send"
    smtp.mailbox.delay_s = 0.4
    pipe = pipeline()
    report_id = pipe.report(SLOW_SQL, recipients(10))
    pipe.start("renderer")
    pipe.start("mailer")
    pipe.wait_consuming(QUEUE_RENDERER)
    pipe.wait_consuming(QUEUE_MAILER)

    began = time.monotonic()
    execution_id = pipe.run_now(report_id)
    pipe.wait_status(execution_id, ("running",))
    time.sleep(1.0)  # the query is streaming (~4 s)
    restarted = time.monotonic()
    private_postgres.restart("fast")
    back = time.monotonic()
    assert pipe.status(execution_id) == "running", "the restart was meant to hit the render"
    pipe.wait_status(execution_id, ("rendered", "sending", "success"), timeout=60)
    report_recovery(scenario, "from the database back (mid-render) to the run rendered", time.monotonic() - back)

    pipe.wait_copies(3)
    sent_before = smtp.count()
    private_postgres.restart("immediate")
    back_again = time.monotonic()
    done = pipe.wait_all_finished(timeout=90)
    report_recovery(scenario, "from the database back (mid-send) to the run finished", done - back_again)
    print(f"[{scenario}] restarts took {back - restarted:.1f}s; run took {done - began:.1f}s end to end")

    assert sent_before < 10, "the restart was meant to hit the send"
    pipe.verdict(scenario, expected_runs=1)


def test_mailer_sigkilled_mid_send(pipeline, smtp):
    """SIGKILL the mailer while a copy is in flight (the server has it, its `250` is still on the way),
    start a new one: the run is taken over once the dead worker's lease runs out and resumes with the
    recipients not yet recorded. The copy in flight may arrive twice, with the same Message-ID."""
    scenario = "mailer SIGKILLed mid-send"
    smtp.mailbox.delay_s = 0.5
    pipe = pipeline()
    report_id = pipe.report(FAST_SQL, recipients(10))
    pipe.start("renderer")
    mailer = pipe.start("mailer")
    pipe.wait_consuming(QUEUE_MAILER)

    pipe.run_now(report_id)
    pipe.wait_copies(4)
    time.sleep(0.1)  # inside the 4th copy's DATA: accepted by the server, not yet recorded
    pipe.sigkill(mailer)
    killed = time.monotonic()
    at_kill = smtp.count()
    pipe.start("mailer")
    done = pipe.wait_all_finished(timeout=90)
    report_recovery(scenario, f"from the SIGKILL to the run finished (lease {LEASE_TTL_S}s)", done - killed)

    assert at_kill < 10, "the kill was meant to hit the send"
    pipe.verdict(scenario, duplicates_allowed=1, expected_runs=1)


def test_renderer_sigkilled_mid_render(pipeline, smtp):
    """SIGKILL the renderer while the rows stream, start a new one: the redelivered message waits for
    the dead worker's lease to run out, then renders the run again from the start (attempt 2)."""
    scenario = "renderer SIGKILLed mid-render"
    pipe = pipeline()
    report_id = pipe.report(SLOW_SQL, recipients(3))
    renderer = pipe.start("renderer")
    pipe.start("mailer")
    pipe.wait_consuming(QUEUE_RENDERER)

    execution_id = pipe.run_now(report_id)
    pipe.wait_status(execution_id, ("running",))
    time.sleep(1.5)
    pipe.sigkill(renderer)
    killed = time.monotonic()
    pipe.start("renderer")
    done = pipe.wait_all_finished(timeout=90)
    report_recovery(scenario, f"from the SIGKILL to the run finished (lease {LEASE_TTL_S}s, ~4s render)", done - killed)

    figures = pipe.verdict(scenario, expected_runs=1)
    assert figures["attempts"] == 2  # the killed render and the one that finished it


def run_database_outage_while_sending(
    pipe: Pipeline, cluster, smtp: SmtpServer, scenario: str, *, stop_at=None
) -> None:
    """Stop the application database for OUTAGE_S while the mailer sends, then start it again.

    `stop_at` (a time.time()) places the outage; by default it starts once 3 copies are out.
    """
    pipe.wait_copies(3)
    if stop_at is not None:
        while time.time() < stop_at:
            time.sleep(0.01)
    down = time.monotonic()
    cluster.stop()
    at_stop = smtp.count()
    while time.monotonic() - down < OUTAGE_S:
        pipe.check_alive()
        time.sleep(0.2)
    at_start = smtp.count()
    cluster.start()
    back = time.monotonic()
    print(f"[{scenario}] database down {back - down:.1f}s, back at second :{datetime.now(UTC):%S.%f}")
    pipe.wait_copies(at_start + 1)
    print(f"[{scenario}] the mailer sent again {time.monotonic() - back:.1f}s after the database was back")
    done = pipe.wait_all_finished(timeout=120)
    report_recovery(scenario, "from the database back to the run finished", done - back)
    # While nothing could be recorded the mailer sent nothing beyond the copy already in flight.
    assert at_start - at_stop <= 1, (at_stop, at_start)


OUTAGE_S = 15


def test_postgres_down_15s_while_sending(pipeline, private_postgres, smtp):
    """The application database stops for 15 s while the mailer sends: longer than the 6 s lease, so
    the mailer's lease has run out by the time the database is back. The copy the server accepted
    during the outage is recorded once it is back, nothing more is sent meanwhile, the sweeper (a
    scheduler runs) does not hand the run of a live mailer to another one, and nobody gets two copies."""
    scenario = "postgres down 15s while sending"
    smtp.mailbox.delay_s = 0.4
    pipe = pipeline()
    report_id = pipe.report(FAST_SQL, recipients(12))
    pipe.start("renderer")
    pipe.start("mailer")
    pipe.start("scheduler")
    pipe.wait_consuming(QUEUE_MAILER)

    pipe.run_now(report_id)
    run_database_outage_while_sending(pipe, private_postgres, smtp, scenario)
    pipe.verdict(scenario, expected_runs=1)


# --- make chaos -----------------------------------------------------------------------------------


OLD_MAIL_MAX_RETRIES = 5  # the retry budget before BIAPP_MAIL_RETRY_WINDOW_S (BIAPP_MAIL_MAX_RETRIES' default)


@pytest.mark.chaos
def test_smtp_down_longer_than_the_old_retry_budget(pipeline, smtp):
    """The SMTP server is down for 45 s when the run reaches the mailer. With backoff capped at 5 s the
    old budget (5 retries) was spent after about 25 s and the run ended `failed`; the retry window (120 s)
    keeps trying, and the first attempt after the server is back reaches everyone."""
    scenario = "smtp down 45s"
    outage_s = 45
    pipe = pipeline(BIAPP_MAX_BACKOFF_S="5", BIAPP_MAIL_RETRY_WINDOW_S="120")
    report_id = pipe.report(FAST_SQL, recipients(5))
    pipe.start("renderer")
    pipe.start("mailer")
    pipe.wait_consuming(QUEUE_MAILER)

    smtp.stop()
    down = time.monotonic()
    execution_id = pipe.run_now(report_id)
    pipe.wait_status(execution_id, ("sending",))
    while time.monotonic() - down < outage_s:
        pipe.check_alive()
        time.sleep(0.5)
    smtp.start()
    back = time.monotonic()
    done = pipe.wait_all_finished(timeout=60)
    report_recovery(scenario, "from the SMTP server back to the run finished (backoff cap 5s)", done - back)

    pipe.verdict(scenario, expected_runs=1)
    with pipe.factory() as session:
        attempts = session.scalars(sa.select(Delivery.attempts)).all()
    print(f"[{scenario}] {min(attempts)} attempts per recipient (the old budget allowed {OLD_MAIL_MAX_RETRIES + 1})")
    assert min(attempts) > OLD_MAIL_MAX_RETRIES + 1


@pytest.mark.chaos
def test_scheduler_sigkilled_mid_dispatch(pipeline, smtp):
    """Every process of `biapp scheduler` is SIGKILLed the moment its first tick has committed the
    due runs (their messages may or may not be out), and a new scheduler is started: runs whose
    message was lost are re-published by the sweeper, none is rendered twice, all succeed (late allowed)."""
    scenario = "scheduler SIGKILLed mid-dispatch"
    pipe = pipeline()
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    for n in range(20):
        pipe.report(FAST_SQL, recipients(2, prefix=f"s{n:02d}-"), due=due, name=f"Report {n}")
    pipe.start("renderer")
    pipe.start("mailer")
    pipe.wait_consuming(QUEUE_RENDERER)
    pipe.wait_consuming(QUEUE_MAILER)

    scheduler = pipe.start("scheduler")

    def dispatched():
        pipe.check_alive()
        with pipe.factory() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(ReportExecution))

    at_kill = wait_until(dispatched, timeout=60, interval=0.01, what="the first dispatch")
    pipe.sigkill_scheduler(scheduler)
    killed = time.monotonic()
    pipe.start("scheduler")
    done = pipe.wait_all_finished(timeout=180)
    report_recovery(scenario, "from the SIGKILL to every run finished (sweeper tick each minute)", done - killed)

    figures = pipe.verdict(scenario, expected_runs=20)
    with pipe.factory() as session:
        republished = session.scalar(
            sa.select(sa.func.count()).select_from(ReportExecution).where(ReportExecution.enqueue_count > 1)
        )
    print(f"[{scenario}] {at_kill} runs committed at the kill, {republished} re-published by the sweeper")
    assert figures["attempts"] == 1  # no run was rendered twice


@pytest.mark.chaos
def test_postgres_back_from_15s_down_just_before_a_sweep(pipeline, private_postgres, smtp):
    """The 15 s outage placed so the database is back 0.3 s before the sweeper's minute tick: the
    sweeper then finds the lease of a live mailer expired (it could not renew while the database was
    away) before that mailer's next heartbeat. It must give the mailer its lease period to renew, not
    hand the run to another worker, which would send the copy accepted during the outage (not yet in the
    ledger) and the next ones a second time (seen before the fix: 61 copies for 60 recipients)."""
    scenario = "postgres back from 15s down just before a sweep"
    smtp.mailbox.delay_s = 0.3
    pipe = pipeline()
    report_id = pipe.report(FAST_SQL, recipients(60))  # ~18 s of sending
    pipe.start("renderer")
    pipe.start("mailer")
    pipe.start("scheduler")
    pipe.wait_consuming(QUEUE_MAILER)

    minute = (int(time.time() + 20) // 60 + 1) * 60  # the run starts ~19 s before the outage ends
    while time.time() < minute - OUTAGE_S - 4:
        pipe.check_alive()
        time.sleep(0.1)
    pipe.run_now(report_id)
    run_database_outage_while_sending(pipe, private_postgres, smtp, scenario, stop_at=minute - OUTAGE_S - 0.3)
    pipe.verdict(scenario, expected_runs=1)
    swept = [line for line in pipe.logs(lines=10_000).splitlines() if "re-sent to the mailer" in line]
    print(f"[{scenario}] sweeper lines: {len(swept)}")


@pytest.mark.chaos
def test_mailer_sigkilled_three_times_mid_send(pipeline, smtp):
    """A longer send (40 recipients) whose mailer is SIGKILLed three times and restarted each time:
    at most one duplicate per kill, each with the first copy's Message-ID."""
    scenario = "mailer SIGKILLed 3 times mid-send"
    smtp.mailbox.delay_s = 0.3
    pipe = pipeline()
    report_id = pipe.report(FAST_SQL, recipients(40))
    pipe.start("renderer")
    mailer = pipe.start("mailer")
    pipe.wait_consuming(QUEUE_MAILER)

    pipe.run_now(report_id)
    kills = []
    for target in (5, 15, 25):
        pipe.wait_copies(target, timeout=90)
        time.sleep(0.1)
        pipe.sigkill(mailer)
        kills.append((time.monotonic(), smtp.count()))
        mailer = pipe.start("mailer")
    done = pipe.wait_all_finished(timeout=180)
    report_recovery(scenario, "from the last SIGKILL to the run finished", done - kills[-1][0])
    assert kills[-1][1] < 40, "the last kill was meant to hit the send"
    pipe.verdict(scenario, duplicates_allowed=len(kills), expected_runs=1)
