"""A real `biapp worker mailer` SIGKILLed in the middle of a send, then started again.

What this test pins down: every recipient ends with exactly one copy, except the
one whose message was in flight at the kill. In the worst case, made here on
purpose, the server had already accepted that message when the worker died (its
`250` never reached the worker, so the ledger still says `pending`): that one
recipient gets a second copy when the run resumes, with the same Message-ID as
the first. Nobody else gets two, and nobody gets none.
"""

from __future__ import annotations

import signal
import uuid

import sqlalchemy as sa

from shared.db import transaction
from shared.messaging import BrokerPublisher, build_broker
from shared.models import ReportExecution
from tests.integration.test_mail_helpers import ScriptedHandler, execution_state, seed_rendered, start_smtp
from tests.support import Process, base_env, make_settings, wait_until

RECIPIENTS = [f"r{n}@example.com" for n in range(1, 7)]


def _status(factory, execution_id: str) -> str:
    with transaction(factory) as session:
        return session.execute(
            sa.select(ReportExecution.status).where(ReportExecution.id == uuid.UUID(execution_id))
        ).scalar_one()


def test_worker_killed_mid_send_resumes_and_only_the_message_in_flight_is_sent_twice(
    amqp, pg_url, pg_session_factory, tmp_path
):
    # The third message stalls after the server has accepted it; the worker is killed right then.
    handler = ScriptedHandler(stall_after=2, stall_seconds=2)
    controller, port = start_smtp(handler)
    env = base_env(
        BIAPP_DATABASE_URL=pg_url,
        BIAPP_BROKER_URL=amqp,
        BIAPP_SMTP_TIMEOUT_S="5",
    )
    settings = make_settings(**env)
    seeded = seed_rendered(pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=RECIPIENTS)
    first = Process(["worker", "mailer", "--processes", "1", "--threads", "1"], env, log=tmp_path / "first.log")
    second = None
    try:
        BrokerPublisher(build_broker(settings)).send("deliver_report", seeded.execution_id)
        assert handler.data_started.wait(60), first.output()
        first.signal(signal.SIGKILL)
        first.proc.wait(10)

        _, deliveries = execution_state(pg_session_factory, seeded.execution_id)
        assert [r for r, d in sorted(deliveries.items()) if d.status == "sent"] == RECIPIENTS[:2]

        second = Process(["worker", "mailer", "--processes", "1", "--threads", "1"], env, log=tmp_path / "second.log")
        wait_until(
            lambda: _status(pg_session_factory, seeded.execution_id) in {"success", "partial", "failed"},
            timeout=90,
            what="the resumed delivery to finish",
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
        controller.stop()

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success", execution.error
    assert all(d.status == "sent" for d in deliveries.values())
    in_flight = RECIPIENTS[2]
    assert handler.copies() == {r: (2 if r == in_flight else 1) for r in RECIPIENTS}
    copies = [m.message["Message-ID"] for m in handler.received if m.recipients == [in_flight]]
    assert copies[0] == copies[1] == deliveries[in_flight].message_id
