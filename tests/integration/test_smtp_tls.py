"""TLS (STARTTLS and implicit) with a self-signed certificate, and a server that stalls."""

from __future__ import annotations

import socket
import ssl

import pytest

from services.mailer.deliver import RetryDelivery, deliver_execution
from services.mailer.transport import SmtpFailure, SmtplibTransport, SmtpSettings
from shared.context import build_context
from shared.messaging import RecordingPublisher
from tests.integration.test_mail_helpers import (
    SMTP_PASSWORD,
    SMTP_USER,
    PasswordCheck,
    ScriptedHandler,
    execution_state,
    seed_rendered,
    self_signed,
    start_smtp,
)
from tests.support import make_settings


@pytest.fixture
def certificate(tmp_path):
    return self_signed(tmp_path)


def _server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _ctx(pg_url, pg_session_factory, **env):
    settings = make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_SMTP_TIMEOUT_S="2", **env)
    return settings, build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_a_trusted_test_ca_delivers_and_logs_in(security, certificate, pg_url, pg_session_factory):
    handler = ScriptedHandler()
    server_tls = _server_context(certificate)
    tls_kwargs = (
        {"tls_context": server_tls, "require_starttls": True} if security == "starttls" else {"ssl_context": server_tls}
    )
    controller, port = start_smtp(
        handler,
        authenticator=PasswordCheck(SMTP_USER, SMTP_PASSWORD),
        auth_required=True,
        # aiosmtpd cannot tell it is wrapped in implicit TLS; it requires TLS for AUTH only via STARTTLS.
        auth_require_tls=security == "starttls",
        **tls_kwargs,
    )
    settings, ctx = _ctx(pg_url, pg_session_factory, BIAPP_SMTP_CA_FILE=certificate[0])
    try:
        seeded = seed_rendered(
            pg_session_factory,
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            security=security,
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            recipients=["ana@example.com", "bo@example.com"],
        )
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success", execution.error
    assert handler.copies() == {"ana@example.com": 1, "bo@example.com": 1}


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_untrusted_certificate_fails_the_run_with_a_tls_reason(security, certificate, pg_url, pg_session_factory):
    handler = ScriptedHandler()
    server_tls = _server_context(certificate)
    tls_kwargs = {"tls_context": server_tls} if security == "starttls" else {"ssl_context": server_tls}
    controller, port = start_smtp(handler, **tls_kwargs)
    settings, ctx = _ctx(pg_url, pg_session_factory)  # no BIAPP_SMTP_CA_FILE: the test CA is not trusted
    try:
        seeded = seed_rendered(
            pg_session_factory,
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            security=security,
            recipients=["ana@example.com"],
        )
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed"
    assert "TLS certificate" in execution.error and "not trusted" in execution.error
    assert handler.received == []


def test_starttls_asked_of_a_server_without_it_names_the_problem():
    handler = ScriptedHandler()
    controller, port = start_smtp(handler)
    try:
        with pytest.raises(SmtpFailure) as caught:
            SmtplibTransport().open(SmtpSettings("127.0.0.1", port, "starttls", None, timeout_s=2))
    finally:
        controller.stop()
    assert caught.value.reason == "tls"
    assert "does not offer STARTTLS" in caught.value.message


@pytest.fixture
def stalled_port():
    """A socket that completes the TCP handshake (kernel backlog) but never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_server_that_stalls_times_out_and_the_run_retries(stalled_port, pg_url, pg_session_factory):
    settings, ctx = _ctx(pg_url, pg_session_factory)
    seeded = seed_rendered(
        pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=stalled_port, recipients=["ana@example.com"]
    )
    with pytest.raises(RetryDelivery):
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "sending"
    assert deliveries["ana@example.com"].status == "pending"
    assert "did not answer within 2 s" in deliveries["ana@example.com"].error


def test_server_that_stalls_mid_message_times_out(pg_url, pg_session_factory):
    handler = ScriptedHandler(stall_after=0, stall_seconds=3)
    controller, port = start_smtp(handler)
    settings, ctx = _ctx(pg_url, pg_session_factory)
    try:
        seeded = seed_rendered(
            pg_session_factory, settings, smtp_host="127.0.0.1", smtp_port=port, recipients=["ana@example.com"]
        )
        with pytest.raises(RetryDelivery):
            deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    _, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert deliveries["ana@example.com"].status == "pending"
    assert "did not answer" in deliveries["ana@example.com"].error
