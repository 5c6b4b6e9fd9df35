"""The mailer against a real aiosmtpd server and a real PostgreSQL ledger."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

import pytest

from services.mailer.deliver import RetryDelivery, deliver_execution
from services.mailer.transport import SmtplibTransport
from shared.clock import FixedClock
from shared.context import build_context
from shared.messaging import RecordingPublisher
from tests.integration.test_mail_helpers import (
    SMTP_PASSWORD,
    SMTP_USER,
    PasswordCheck,
    ScriptedHandler,
    execution_state,
    seed_rendered,
    start_smtp,
)
from tests.support import free_port, make_settings

CSV = b"region,revenue\r\nEMEA,1200.50\r\n<script>alert(1)</script>,7\r\nAPAC,99\r\n"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def settings(pg_url):
    return make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_SMTP_TIMEOUT_S="3")


@pytest.fixture
def ctx(settings, pg_session_factory):
    return build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)


@pytest.fixture
def smtp():
    handler = ScriptedHandler()
    controller, port = start_smtp(handler)
    yield handler, port
    controller.stop()


def _deliver_until_done(ctx, execution_id: str, limit: int = 10) -> int:
    """Run the actor's body as Dramatiq would, retrying on RetryDelivery; returns the number of runs."""
    for attempt in range(1, limit + 1):
        try:
            deliver_execution(ctx, SmtplibTransport(), execution_id)
            return attempt
        except RetryDelivery:
            continue
    raise AssertionError("delivery never finished")


def test_each_recipient_gets_one_private_copy_with_files_intact(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    pdf = b"%PDF-1.7 fake but binary \x00\xff" * 100
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com", "bo@example.com"],
        cc=["cy@example.com"],
        files=[
            ("csv", "umsätze 2026.csv", "text/csv; charset=utf-8", CSV),
            ("pdf", "report.pdf", "application/pdf", pdf),
        ],
        subject="{{report_name}} {{date}} {{row_count}} rows ({{timezone}})",
    )

    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert {r: d.status for r, d in deliveries.items()} == {
        "ana@example.com": "sent",
        "bo@example.com": "sent",
        "cy@example.com": "sent",
    }
    assert handler.copies() == {"ana@example.com": 1, "bo@example.com": 1, "cy@example.com": 1}
    by_rcpt = {m.recipients[0]: m for m in handler.received}
    for mail in handler.received:
        assert len(mail.recipients) == 1
        others = {"ana@example.com", "bo@example.com", "cy@example.com"} - set(mail.recipients)
        assert not any(o.encode() in mail.raw for o in others), "a copy discloses another recipient"
        message = mail.message
        assert message["Subject"] == "Weekly revenue 2026-03-02 3 rows (Europe/Berlin)"
        assert message["Message-ID"] and message["Date"]
        assert message["Message-ID"] == deliveries[mail.recipients[0]].message_id
        assert message.get_body(("plain",)) is not None
        html = message.get_body(("html",)).get_content()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
        files = {part.get_filename(): part for part in message.iter_attachments()}
        assert set(files) == {"umsätze 2026.csv", "report.pdf"}
        for filename, data in (("umsätze 2026.csv", CSV), ("report.pdf", pdf)):
            assert (
                hashlib.sha256(files[filename].get_payload(decode=True)).hexdigest() == hashlib.sha256(data).hexdigest()
            )
        assert files["report.pdf"].get_content_type() == "application/pdf"
        assert files["umsätze 2026.csv"].get_content_type() == "text/csv"
    assert by_rcpt["ana@example.com"].message["To"] == "ana@example.com"
    assert by_rcpt["ana@example.com"].message["Cc"] is None
    assert by_rcpt["cy@example.com"].message["Cc"] == "cy@example.com"
    assert str(by_rcpt["cy@example.com"].message["To"]) == "undisclosed-recipients:;"


def test_subject_template_cannot_inject_headers(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com"],
        name="Sales\r\nBcc: victim@evil.example",
        subject="{{report_name}}\nX-Injected: yes",
    )

    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)

    (mail,) = handler.received
    assert mail.recipients == ["ana@example.com"]
    assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None
    assert mail.message["Subject"] == "Sales Bcc: victim@evil.example X-Injected: yes"


def test_temporary_451_is_retried_and_everyone_gets_one_copy(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    handler.rcpt_replies["bo@example.com"] = ["451 4.3.0 try again later"]
    handler.data_replies["cy@example.com"] = ["451 4.7.1 greylisted"]
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com", "bo@example.com", "cy@example.com"],
    )

    runs = _deliver_until_done(ctx, seeded.execution_id)

    assert runs == 2
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert handler.copies() == {"ana@example.com": 1, "bo@example.com": 1, "cy@example.com": 1}
    assert deliveries["ana@example.com"].attempts == 1
    assert deliveries["bo@example.com"].attempts == 2


def test_permanent_550_for_one_recipient_is_partial_and_others_get_one_copy(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    handler.rcpt_replies["gone@example.com"] = ["550 5.1.1 mailbox unavailable"] * 5
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com", "gone@example.com", "zed@example.com"],
    )

    runs = _deliver_until_done(ctx, seeded.execution_id)

    assert runs == 1, "a permanent refusal is not retried"
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "partial"
    assert "gone@example.com" in execution.error and "550" in execution.error
    assert deliveries["gone@example.com"].status == "failed"
    assert deliveries["gone@example.com"].attempts == 1
    assert handler.copies() == {"ana@example.com": 1, "zed@example.com": 1}


def test_wrong_password_fails_fast_with_a_clear_reason_and_never_shows_the_password(
    settings, pg_session_factory, caplog
):
    handler = ScriptedHandler()
    controller, port = start_smtp(
        handler, authenticator=PasswordCheck(SMTP_USER, "the-right-one"), auth_require_tls=False, auth_required=True
    )
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    try:
        seeded = seed_rendered(
            pg_session_factory,
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            recipients=["ana@example.com", "bo@example.com"],
        )
        with caplog.at_level(logging.DEBUG):
            deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)  # no RetryDelivery: not retried
    finally:
        controller.stop()

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed"
    assert "rejected the username or password" in execution.error
    assert all(d.status == "failed" and d.attempts <= 1 for d in deliveries.values())
    assert handler.received == []
    assert SMTP_PASSWORD not in caplog.text
    assert SMTP_PASSWORD not in execution.error
    assert all(SMTP_PASSWORD not in (d.error or "") for d in deliveries.values())


def test_right_password_logs_in_and_sends(settings, pg_session_factory):
    handler = ScriptedHandler()
    controller, port = start_smtp(
        handler, authenticator=PasswordCheck(SMTP_USER, SMTP_PASSWORD), auth_require_tls=False, auth_required=True
    )
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    try:
        seeded = seed_rendered(
            pg_session_factory,
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            recipients=["ana@example.com"],
        )
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert handler.copies() == {"ana@example.com": 1}


def test_server_down_then_up_delivers_once_after_retry(ctx, settings, pg_session_factory):
    port = free_port()
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com", "bo@example.com"],
    )

    with pytest.raises(RetryDelivery):
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "sending"
    assert all(d.status == "pending" and "refused the connection" in d.error for d in deliveries.values())

    handler = ScriptedHandler()
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert handler.copies() == {"ana@example.com": 1, "bo@example.com": 1}
    assert all(d.attempts == 2 and d.error is None for d in deliveries.values())


def test_server_that_never_comes_back_fails_once_the_retry_window_is_over(settings, pg_session_factory):
    clock = FixedClock(datetime.now(UTC))
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory, clock=clock)
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=free_port(), recipients=["ana@example.com"]
    )
    states = []
    for _ in range(10):
        try:
            deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
            break
        except RetryDelivery:
            states.append(execution_state(pg_session_factory, seeded.execution_id)[0].status)
            clock.advance(minutes=15)
    # Attempts at 0, 15, 30 and 45 minutes retry; the one at 60 minutes (BIAPP_MAIL_RETRY_WINDOW_S) gives up.
    assert states == ["sending"] * 4
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed"
    assert "refused the connection" in execution.error


def test_a_ten_minute_smtp_outage_ends_in_success(settings, pg_session_factory):
    """The retry budget is a time window (an hour), not a count that a short outage can use up."""
    clock = FixedClock(datetime.now(UTC))
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory, clock=clock)
    port = free_port()
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=["ana@example.com"]
    )
    for _ in range(20):  # 20 attempts, within 10 minutes
        with pytest.raises(RetryDelivery):
            deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
        clock.advance(seconds=30)
    handler = ScriptedHandler()
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert handler.copies() == {"ana@example.com": 1}


def test_redelivered_message_after_success_sends_nothing_twice(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=["ana@example.com"]
    )
    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    assert handler.copies() == {"ana@example.com": 1}


def test_host_outside_the_allow_list_fails_the_run_without_connecting(pg_url, pg_session_factory, smtp):
    handler, port = smtp
    settings = make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_SMTP_ALLOWED_HOSTS="smtp.example.com")
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=["ana@example.com"]
    )
    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed"
    assert "BIAPP_SMTP_ALLOWED_HOSTS" in execution.error
    assert handler.received == []


def test_smtp_password_no_key_can_open_fails_the_run_with_a_clear_error(pg_url, pg_session_factory, smtp):
    handler, port = smtp
    from cryptography.fernet import Fernet

    lost_key = Fernet.generate_key().decode()
    seed_settings = make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_FERNET_KEYS=lost_key)
    seeded = seed_rendered(
        pg_session_factory,
        seed_settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        recipients=["ana@example.com"],
    )
    ctx = build_context(
        make_settings(BIAPP_DATABASE_URL=pg_url), RecordingPublisher(), session_factory=pg_session_factory
    )
    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed"
    assert "SMTP password cannot be decrypted with any key in BIAPP_FERNET_KEYS" in execution.error
    assert handler.received == []


def test_test_run_goes_only_to_the_caller_with_a_test_subject(ctx, settings, pg_session_factory, smtp):
    handler, port = smtp
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        recipients=["ana@example.com", "bo@example.com"],
        cc=["cy@example.com"],
        trigger="test",
    )
    deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    (mail,) = handler.received
    assert mail.recipients == [seeded.owner_email]
    assert mail.message["Subject"] == "[TEST] Revenue 2026-03-02"
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success" and execution.trigger == "test"
