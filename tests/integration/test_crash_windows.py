"""The lifecycle's promises at the edges: never before its instant, never twice because a write failed.

Real PostgreSQL and a real SMTP server (aiosmtpd); the database failure is injected at the one
write that matters (recording an accepted copy), as a dropped connection would raise it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from services.mailer import deliver, sending
from services.mailer.deliver import deliver_execution
from services.mailer.transport import SmtplibTransport
from services.renderer.render import render_execution
from shared.clock import FixedClock
from shared.context import build_context
from shared.db import transaction
from shared.messaging import RecordingPublisher
from shared.models import ReportExecution
from tests.integration.seeding import add_report, seed_query
from tests.integration.test_mail_helpers import ScriptedHandler, execution_state, seed_rendered, start_smtp
from tests.support import make_settings


@pytest.fixture
def settings(pg_url):
    return make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_SMTP_TIMEOUT_S="3")


def test_an_accepted_copy_whose_record_fails_is_recorded_later_and_never_sent_again(
    settings, pg_session_factory, monkeypatch
):
    handler = ScriptedHandler()
    controller, port = start_smtp(handler)
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=["ana@example.com", "bo@x.org"]
    )
    real_record = deliver._record
    failures = {"left": 3}

    def flaky_record(ctx, delivery_id, status, **kwargs):
        if status == "sent" and failures["left"]:
            failures["left"] -= 1
            raise sa.exc.OperationalError(
                "UPDATE deliveries", {}, psycopg.OperationalError("server closed the connection")
            )
        return real_record(ctx, delivery_id, status, **kwargs)

    monkeypatch.setattr(deliver, "_record", flaky_record)
    monkeypatch.setattr(sending.time, "sleep", lambda s: None)
    try:
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)  # a redelivered message
    finally:
        controller.stop()

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert failures["left"] == 0, "the record really failed three times"
    assert execution.status == "success"
    assert {r: d.status for r, d in deliveries.items()} == {"ana@example.com": "sent", "bo@x.org": "sent"}
    assert handler.copies() == {"ana@example.com": 1, "bo@x.org": 1}


def test_a_run_never_starts_before_its_scheduled_instant(settings, pg_session_factory, pg_data_database):
    """A delayed message that arrives early (a scheduler restart, a redelivery) waits for the instant."""
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now)
    publisher = RecordingPublisher()
    ctx = build_context(settings, publisher, session_factory=pg_session_factory, clock=clock)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report = add_report(session, owner, query, now=now)
        execution = ReportExecution(
            report_id=report.id,
            trigger="schedule",
            status="queued",
            scheduled_for=now + timedelta(seconds=40),
            queued_at=now,
            last_enqueued_at=now,
            recipients=[{"address": "a@example.com", "kind": "to"}],
        )
        session.add(execution)
        session.flush()
        execution_id = execution.id

    render_execution(ctx, str(execution_id))

    with pg_session_factory() as session:
        assert session.get(ReportExecution, execution_id).status == "queued"
    assert publisher.sent == [("render_report", (str(execution_id),), 41_000)]

    clock.advance(seconds=40)
    render_execution(ctx, str(execution_id))
    with pg_session_factory() as session:
        assert session.get(ReportExecution, execution_id).status == "rendered"


def test_a_run_of_a_report_paused_before_it_started_is_skipped(settings, pg_session_factory, pg_data_database):
    now = datetime.now(UTC)
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    owner, query = seed_query(pg_session_factory, pg_data_database, settings)
    with transaction(pg_session_factory) as session:
        report = add_report(session, owner, query, now=now)
        execution = ReportExecution(
            report_id=report.id,
            trigger="schedule",
            status="queued",
            scheduled_for=now,
            queued_at=now,
            last_enqueued_at=now,
            recipients=[{"address": "a@example.com", "kind": "to"}],
        )
        session.add(execution)
        session.flush()
        execution_id = execution.id
        report.is_active = False

    render_execution(ctx, str(execution_id))

    with pg_session_factory() as session:
        execution = session.get(ReportExecution, uuid.UUID(str(execution_id)))
    assert execution.status == "skipped" and "paused" in execution.error
    assert not ctx.publisher.sent
