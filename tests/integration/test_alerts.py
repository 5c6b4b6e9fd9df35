"""Alerts on real PostgreSQL and a real SMTP server: exactly once per occurrence and per recipient."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from services.mailer.alert_mail import deliver_event
from services.mailer.transport import SmtplibTransport
from services.renderer.alerting import evaluate_event
from services.scheduler.alerts import dispatch_due_alerts
from shared import alerts, users
from shared.context import build_context
from shared.db import transaction
from shared.messaging import RecordingPublisher
from shared.models import Alert, AlertEvent, EmailConfig, SavedQuery
from shared.reports import apply_changes
from tests.integration.seeding import source_on_data_database
from tests.support import make_settings

EVERY_5_MIN = {"frequency": "cron", "cron": "*/5 * * * *", "timezone": "Europe/Berlin"}
# One minute past the hour: the next */5 occurrence (hh:05) is beyond the dispatcher's one-minute lookahead.
NOW = datetime.now(UTC).replace(minute=1, second=0, microsecond=0)


@pytest.fixture
def settings(pg_url):
    return make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_SMTP_TIMEOUT_S="3")


@pytest.fixture
def make_ctx(settings, pg_session_factory):
    def build():
        return build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)

    return build


@pytest.fixture
def tickets(pg_data_database):
    """A table in the data database the alert's query reads; `set_open(n)` sets how many tickets are open."""
    engine = pg_data_database.admin_engine
    with engine.begin() as conn:
        conn.execute(sa.text("create table if not exists alert_tickets (id int, status text, hours numeric)"))

    def set_open(count: int) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("delete from alert_tickets"))
            for i in range(count):
                conn.execute(sa.text("insert into alert_tickets values (:i, 'open', :h)"), {"i": i, "h": 1.5 * i})

    yield set_open
    with engine.begin() as conn:
        conn.execute(sa.text("drop table alert_tickets"))


def seed(factory, data, smtp, *, sql="select id, status, hours from alert_tickets", **alert_fields):
    with transaction(factory) as session:
        owner = users.create_user(session, email="ana@example.com", password="correct horse battery", role="analyst")
        session.add(
            EmailConfig(
                is_system_default=True, host=smtp.host, port=smtp.port, security="none", from_address="bi@example.com"
            )
        )
        source = source_on_data_database(data, name="Tickets DB")
        session.add(source)
        session.flush()
        query = SavedQuery(name="Open tickets", kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
        session.add(query)
        session.flush()
        return owner.id, query.id


def add_alert(session, owner_id, query_id, *, name="Backlog", due=NOW, **fields) -> Alert:
    alert = Alert(owner_id=owner_id, is_active=True)
    data = {
        "name": name,
        "saved_query_id": query_id,
        "condition": {"kind": "row_count", "op": "gt", "value": 2},
        "schedule": EVERY_5_MIN,
        "recipients": ["oncall@example.com", "lead@example.com"],
        "cc": ["boss@example.com"],
        "notify": "on_change",
        "is_active": True,
    }
    data.update(fields)
    apply_changes(alert, data, due - timedelta(minutes=5))
    alert.next_run_at = due
    session.add(alert)
    session.flush()
    return alert


def evaluate_and_deliver(ctx, event_id) -> str:
    """What the renderer and mailer workers do with the messages the evaluation publishes."""
    state = evaluate_event(ctx, str(event_id))
    for actor, args, _ in list(ctx.publisher.sent):
        if actor == "deliver_alert":
            deliver_event(ctx, SmtplibTransport(), args[0])
    ctx.publisher.sent.clear()
    return state


def event(factory, event_id) -> AlertEvent:
    with factory() as session:
        return session.get(AlertEvent, event_id)


def test_alert_turning_true_emails_each_recipient_once_and_only_on_change(
    make_ctx, pg_data_database, pg_session_factory, smtp_server, tickets
):
    tickets(5)
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
    with transaction(pg_session_factory) as session:
        alert_id = add_alert(session, owner, query).id
    ctx = make_ctx()

    [(event_id, _)] = dispatch_due_alerts(ctx, now=NOW)
    assert ctx.publisher.sent == [("evaluate_alert", (str(event_id),), None)]
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, event_id) == "true"

    messages = smtp_server.wait_for(3)
    assert Counter(r for m in messages for r in m.recipients) == {
        "oncall@example.com": 1,
        "lead@example.com": 1,
        "boss@example.com": 1,
    }
    message = messages[0].message
    assert message["Subject"] == "[Alert] Backlog: row count > 2 (observed 5)"
    text = message.get_body(("plain",)).get_content()
    done = event(pg_session_factory, event_id)
    local = done.evaluated_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert "Observed: 5" in text and f"Evaluated: {local:%Y-%m-%d %H:%M:%S %Z} (Europe/Berlin)" in text
    assert "row count &gt; 2" in message.get_body(("html",)).get_content()
    assert (done.state, done.observed, done.notified, done.notify_reason) == ("true", 5, True, "triggered")
    assert {d.recipient: d.status for d in done.deliveries} == {
        "oncall@example.com": "sent",
        "lead@example.com": "sent",
        "boss@example.com": "sent",
    }

    # A redelivered deliver_alert message finds everyone reached and sends nothing.
    assert deliver_event(ctx, SmtplibTransport(), str(event_id)) == 0

    # The next occurrence, still true: recorded, nobody emailed (on_change).
    [(second, _)] = dispatch_due_alerts(ctx, now=NOW + timedelta(minutes=5))
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, second) == "true"
    assert event(pg_session_factory, second).notified is False
    # A duplicated evaluate message changes nothing either.
    assert evaluate_event(ctx, str(second)) is None

    # It recovers (no recovery email asked for), then turns true again: one more email each.
    tickets(1)
    manual = alerts.start_manual(pg_session_factory, ctx.publisher, alert_id, requester_id=owner, now=NOW)
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, manual.id) == "false"
    tickets(3)
    manual = alerts.start_manual(pg_session_factory, ctx.publisher, alert_id, requester_id=owner, now=NOW)
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, manual.id) == "true"
    assert len(smtp_server.wait_for(6)) == 6
    assert len(smtp_server.messages) == 6
    with pg_session_factory() as session:
        alert = session.get(Alert, alert_id)
        assert (alert.last_state, alert.last_condition) == ("true", True)
        assert alert.next_run_at > NOW + timedelta(minutes=5)  # manual runs never moved it


def test_value_condition_with_recovery_notice(make_ctx, pg_data_database, pg_session_factory, smtp_server, tickets):
    tickets(4)  # hours 0, 1.5, 3, 4.5 -> sum 9
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
    condition = {"kind": "value", "column": "hours", "aggregate": "sum", "op": "gte", "value": 8}
    with transaction(pg_session_factory) as session:
        alert_id = add_alert(
            session, owner, query, condition=condition, notify_on_recovery=True, recipients=["a@example.com"], cc=[]
        ).id
    ctx = make_ctx()
    first = alerts.start_manual(pg_session_factory, ctx.publisher, alert_id, requester_id=owner, now=NOW)
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, first.id) == "true"
    assert smtp_server.wait_for(1)[0].message["Subject"] == "[Alert] Backlog: sum(hours) >= 8 (observed 9)"
    tickets(2)
    second = alerts.start_manual(pg_session_factory, ctx.publisher, alert_id, requester_id=owner, now=NOW)
    ctx.publisher.sent.clear()
    assert evaluate_and_deliver(ctx, second.id) == "false"
    assert smtp_server.wait_for(2)[1].message["Subject"].startswith("[Alert resolved] Backlog: sum(hours) >= 8")


def test_query_errors_are_recorded_and_emailed_only_when_asked(
    make_ctx, pg_data_database, pg_session_factory, smtp_server
):
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server, sql="select * from no_such_table")
    with transaction(pg_session_factory) as session:
        quiet = add_alert(session, owner, query, name="Quiet").id
        loud = add_alert(session, owner, query, name="Loud", notify_on_error=True, recipients=["a@example.com"], cc=[])
        loud = loud.id
    ctx = make_ctx()
    for alert_id in (quiet, loud):
        started = alerts.start_manual(pg_session_factory, ctx.publisher, alert_id, requester_id=owner, now=NOW)
        ctx.publisher.sent.clear()
        assert evaluate_and_deliver(ctx, started.id) == "error"
        failed = event(pg_session_factory, started.id)
        assert "no_such_table" in failed.error
    [mail] = smtp_server.wait_for(1)
    assert mail.recipients == ["a@example.com"]
    assert mail.message["Subject"].startswith("[Alert failed] Loud:")
    with pg_session_factory() as session:
        assert session.get(Alert, quiet).last_state == "error"


def test_racing_dispatchers_create_one_event_per_occurrence(
    make_ctx, pg_data_database, pg_session_factory, smtp_server
):
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
    with transaction(pg_session_factory) as session:
        due = {add_alert(session, owner, query, name=f"due {i}", due=NOW - timedelta(seconds=i)).id for i in range(40)}
        for i in range(10):
            add_alert(session, owner, query, name=f"later {i}", due=NOW + timedelta(hours=1))
    contexts = [make_ctx() for _ in range(3)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(ctx):
        try:
            barrier.wait()
            dispatch_due_alerts(ctx, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with pg_session_factory() as session:
        events = session.execute(sa.select(AlertEvent)).scalars().all()
        assert all(a.next_run_at > NOW for a in session.execute(sa.select(Alert)).scalars())
    assert Counter(e.alert_id for e in events) == Counter(due)
    published = [args[0] for ctx in contexts for _, args, _ in ctx.publisher.sent]
    assert sorted(published) == sorted(str(e.id) for e in events)  # each published once, by one dispatcher
    assert dispatch_due_alerts(make_ctx(), now=NOW) == []


def test_lost_evaluation_message_is_published_again(make_ctx, pg_data_database, pg_session_factory, smtp_server):
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
    with transaction(pg_session_factory) as session:
        add_alert(session, owner, query, schedule={"frequency": "cron", "cron": "0 0 1 1 *", "timezone": "UTC"})
    [(event_id, _)] = dispatch_due_alerts(make_ctx(), now=NOW)
    ctx = make_ctx()
    assert dispatch_due_alerts(ctx, now=NOW + timedelta(minutes=1)) == []
    later = NOW + timedelta(minutes=4)
    assert event_id in [e for e, _ in dispatch_due_alerts(ctx, now=later)]


def test_a_mailer_that_died_mid_delivery_is_taken_over_when_its_lease_runs_out(
    make_ctx, pg_data_database, pg_session_factory, smtp_server, tickets
):
    """Alerts deliver under the same lease and ledger as reports: the recipient already reached is not
    emailed again, the others get exactly one copy, and the scheduler tick resumes it."""
    from shared.models import AlertDelivery

    tickets(5)
    owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
    with transaction(pg_session_factory) as session:
        add_alert(session, owner, query)
    ctx = make_ctx()
    [(event_id, _)] = dispatch_due_alerts(ctx, now=NOW)
    ctx.publisher.sent.clear()
    assert evaluate_event(ctx, str(event_id)) == "true"
    ctx.publisher.sent.clear()
    now = datetime.now(UTC)
    with transaction(pg_session_factory) as session:  # a worker reached one recipient, then was killed
        session.execute(
            sa.update(AlertDelivery)
            .where(AlertDelivery.event_id == event_id, AlertDelivery.recipient == "lead@example.com")
            .values(status="sent", sent_at=now)
        )
        session.execute(
            sa.update(AlertEvent)
            .where(AlertEvent.id == event_id)
            .values(lease_owner="mailer-1:dead", lease_expires_at=now + timedelta(seconds=20), delivering_since=now)
        )

    assert deliver_event(ctx, SmtplibTransport(), str(event_id)) == 0  # lease still held: postponed
    [(actor, _, delay_ms)] = ctx.publisher.sent
    assert actor == "deliver_alert" and 19_000 <= delay_ms <= 22_000
    ctx.publisher.sent.clear()

    with transaction(pg_session_factory) as session:  # ... and it runs out
        session.execute(
            sa.update(AlertEvent)
            .where(AlertEvent.id == event_id)
            .values(lease_expires_at=min(NOW, now) - timedelta(seconds=1))
        )
    tick = NOW + timedelta(minutes=1)
    dispatch_due_alerts(ctx, now=tick)
    assert ("deliver_alert", (str(event_id),), None) in ctx.publisher.sent, "the tick re-publishes it"
    with pg_session_factory() as session:
        # ... after one more lease period, in case its mailer is alive and only the database was away
        assert session.get(AlertEvent, event_id).lease_expires_at > tick
    with transaction(pg_session_factory) as session:  # the dead mailer never renews: the grace runs out
        session.execute(
            sa.update(AlertEvent)
            .where(AlertEvent.id == event_id)
            .values(lease_expires_at=min(NOW, now) - timedelta(seconds=1))
        )
    assert deliver_event(ctx, SmtplibTransport(), str(event_id)) == 2

    messages = smtp_server.wait_for(2)
    assert Counter(r for m in messages for r in m.recipients) == {"oncall@example.com": 1, "boss@example.com": 1}
    done = event(pg_session_factory, event_id)
    assert {d.status for d in done.deliveries} == {"sent"} and done.lease_owner is None


def test_an_alert_reaches_webhook_and_teams_destinations_through_the_same_delivery_path(
    make_ctx, settings, pg_data_database, pg_session_factory, smtp_server, tickets
):
    import json

    from standardwebhooks.webhooks import Webhook

    from shared import destinations as rules
    from shared.models.destinations import renumbered
    from shared.security.crypto import SecretBox
    from tests.integration.channel_receivers import Receivers

    receivers = Receivers().start()
    try:
        hook = receivers.script("/hook", [200])
        teams = receivers.script("/teams", [500, 202])
        tickets(5)
        owner, query = seed(pg_session_factory, pg_data_database, smtp_server)
        with transaction(pg_session_factory) as session:
            alert = add_alert(session, owner, query, recipients=["oncall@example.com"], cc=[])
            added = rules.build(
                [
                    {"kind": "webhook", "url": receivers.url("/hook")},
                    {"kind": "teams", "webhook_url": receivers.url("/teams")},
                ],
                [],
                SecretBox(settings.fernet_keys),
                settings,
            )
            secret = added[0].signing_secret_once
            alert.destinations = renumbered([*alert.destinations, *added])
        ctx = make_ctx()
        [(event_id, _)] = dispatch_due_alerts(ctx, now=NOW)
        ctx.publisher.sent.clear()
        with pytest.raises(Exception) as retry:  # Teams answered 500: that destination alone is retried
            evaluate_and_deliver(ctx, event_id)
        assert type(retry.value).__name__ == "RetryAlertDelivery"
        assert deliver_event(ctx, SmtplibTransport(), str(event_id)) == 1
    finally:
        receivers.stop()

    done = event(pg_session_factory, event_id)
    assert {(d.channel, d.status) for d in done.deliveries} == {
        ("email", "sent"),
        ("webhook", "sent"),
        ("teams", "sent"),
    }
    assert len(hook.received) == 1 and len(teams.received) == 2 and len(smtp_server.messages) == 1
    request = hook.received[0]
    payload = Webhook(secret).verify(request["body"], {k.lower(): v for k, v in request["headers"].items()})
    assert payload["type"] == "alert.triggered" and payload["data"]["alert"]["name"] == "Backlog"
    assert payload["data"]["facts"]["Observed"] == "5" and payload["data"]["status"] == "true"
    card = json.loads(teams.received[-1]["body"])["attachments"][0]["content"]
    assert "Backlog" in json.dumps(card)
