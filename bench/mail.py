"""Mailer throughput: 500 recipients, a 1 MB attachment, to a local aiosmtpd sink.

Compares the real mailer (deliver_execution: PostgreSQL ledger, one commit per
recipient, lease heartbeat) with a bare smtplib loop sending the same bytes over
one connection. The sink runs in its own process. Needs PostgreSQL on 127.0.0.1 (BIAPP_TEST_PG_ADMIN to override).

    .venv/bin/python bench/mail.py [--recipients 500] [--attachment-mb 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import smtplib
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from services.mailer.compose import MailContent, PreparedMail, message_id_for  # noqa: E402
from services.mailer.deliver import deliver_execution  # noqa: E402
from services.mailer.transport import SmtplibTransport  # noqa: E402
from shared.context import build_context  # noqa: E402
from shared.db import make_engine, make_session_factory  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import RecordingPublisher  # noqa: E402
from tests.integration.test_mail_helpers import seed_rendered  # noqa: E402
from tests.support import free_port, make_settings  # noqa: E402

PG_ADMIN = os.environ.get("BIAPP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


class Sink:
    """Accepts everything and only counts: the benchmark measures the sender, not the server."""

    def __init__(self, counter):
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def run_sink(port: int, counter, stop) -> None:
    """The sink lives in its own process so it does not share the sender's GIL."""
    controller = Controller(Sink(counter), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024)
    controller.start()
    stop.wait()
    controller.stop()


class SinkProcess:
    def __init__(self):
        self.port = free_port()
        self.counter = multiprocessing.Value("i", 0)
        self.stop = multiprocessing.Event()
        self.process = multiprocessing.Process(target=run_sink, args=(self.port, self.counter, self.stop))

    @property
    def count(self) -> int:
        return self.counter.value

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=2).quit()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the SMTP sink did not start")

    def close(self) -> None:
        self.stop.set()
        self.process.join(10)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def bare_loop(port: int, recipients: list[str], content: MailContent) -> float:
    """The floor: the same bytes built once, then one sendmail per recipient over one connection."""
    mail = PreparedMail(content, sender="reports@example.com", sender_name="BIApp Reports", reply_to=None)
    from datetime import UTC, datetime

    started = time.perf_counter()
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo()
    for recipient in recipients:
        raw = mail.for_recipient(recipient, now=datetime.now(UTC), message_id=message_id_for(uuid.uuid4(), "x@e.com"))
        client.sendmail("reports@example.com", [recipient], raw)
    client.quit()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--attachment-mb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    name = f"biapp_bench_mail_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    sink = SinkProcess()
    sink.start()
    port = sink.port
    try:
        upgrade(url)
        settings = make_settings(BIAPP_DATABASE_URL=url, BIAPP_MAX_ATTACHMENT_BYTES=str(16 * 1024 * 1024))
        engine = make_engine(url)
        factory = make_session_factory(engine)
        recipients = [f"user{n:04d}@example.com" for n in range(args.recipients)]
        attachment = os.urandom(int(args.attachment_mb * 1024 * 1024))
        from services.mailer.compose import Attachment

        content = MailContent(
            "Weekly revenue 2026-03-02",
            "body",
            "<p>body</p>",
            (Attachment("report.pdf", "application/pdf", attachment),),
        )
        ctx = build_context(settings, RecordingPublisher(), session_factory=factory)
        # Alternate the two, several rounds, and keep the best of each: the loopback sink is shared
        # with whatever else runs on the machine, so single runs vary a lot.
        mailer_runs, bare_runs = [], []
        for _ in range(args.rounds):
            seeded = seed_rendered(
                factory,
                settings,
                smtp_host="127.0.0.1",
                smtp_port=port,
                recipients=recipients,
                files=[("pdf", "report.pdf", "application/pdf", attachment)],
            )
            before = sink.count
            started = time.perf_counter()
            deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
            mailer_runs.append(time.perf_counter() - started)
            assert sink.count - before == len(recipients), sink.count
            bare_runs.append(bare_loop(port, recipients, content))
        mailer_s, bare_s = min(mailer_runs), min(bare_runs)
        engine.dispose()
    finally:
        sink.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    n = len(recipients)
    mailer_rate, bare_rate = n / mailer_s, n / bare_s
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"{n} recipients, {args.attachment_mb:g} MB attachment, aiosmtpd sink on loopback")
    print(f"{'':24}{'seconds':>10}{'messages/s':>14}")
    print(f"{'mailer (ledger + SMTP)':24}{mailer_s:>10.2f}{mailer_rate:>14.1f}")
    print(
        f"{'bare smtplib loop':24}{bare_s:>10.2f}{bare_rate:>14.1f}   (best of {len(bare_runs)}: "
        f"{', '.join(f'{b:.2f}' for b in bare_runs)} s)"
    )
    print(f"mailer / bare: {mailer_rate / bare_rate:.0%} (target >= 80%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
