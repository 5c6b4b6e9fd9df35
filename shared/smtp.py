"""SMTP behind a small interface: the real smtplib transport, a recording fake and a connection check.

Every failure is turned into an `SmtpFailure` with a stable `reason` (dns, refused,
timeout, tls, authentication, sender_rejected, recipient_rejected, …) and a
message safe to show a user: it never contains the password, which only ever
reaches `smtplib.SMTP.login`.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid
from typing import Protocol

from shared.errors import OutboundRefusedError
from shared.outbound import OutboundPolicy


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str | None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30
    # Extra CA bundle trusted besides the system store (BIAPP_SMTP_CA_FILE): private CAs, tests.
    ca_file: str | None = None
    local_hostname: str | None = None
    # Set for hosts a non-admin configured: connect only to addresses the policy allows.
    outbound: OutboundPolicy | None = None


class SmtpFailure(Exception):
    """A session-level failure: `permanent` means retrying with the same settings cannot help."""

    def __init__(self, reason: str, message: str, *, permanent: bool, code: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.permanent = permanent
        self.code = code


class SendRefused(Exception):
    """The server refused one message; `code` tells whether a retry may help."""

    def __init__(self, code: int, reply: str, *, reason: str = "recipient_rejected"):
        super().__init__(f"{code} {reply}")
        self.code = code
        self.reply = reply
        self.reason = reason

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class MailSession(Protocol):
    def send(self, raw: bytes, sender: str, recipient: str) -> str: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open(self, settings: SmtpSettings) -> MailSession: ...


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:500]


def _caused_by_timeout(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, TimeoutError | socket.timeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return "timed out" in str(exc)


def classify(exc: BaseException, settings: SmtpSettings) -> SmtpFailure:
    """Turn whatever smtplib/socket/ssl raised into a precise, password-free SmtpFailure."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, SmtpFailure):
        return exc
    if isinstance(exc, OutboundRefusedError):
        return SmtpFailure("not_allowed", exc.message, permanent=True)
    if isinstance(exc, socket.gaierror):
        return SmtpFailure("dns", f"The SMTP host name {settings.host!r} could not be resolved.", permanent=False)
    if isinstance(exc, ConnectionRefusedError):
        return SmtpFailure(
            "refused", f"{where} refused the connection (is the server up and the port right?).", permanent=False
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SmtpFailure(
            "authentication",
            f"The SMTP server rejected the username or password: {exc.smtp_code} {_reply_text(exc.smtp_error)}",
            permanent=True,
            code=exc.smtp_code,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        text = str(exc)
        if "STARTTLS" in text:
            return SmtpFailure(
                "tls", f"{where} does not offer STARTTLS; choose security 'ssl' or 'none'.", permanent=True
            )
        return SmtpFailure("authentication", f"{where} does not accept a login ({text}).", permanent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpFailure(
            "tls", f"The TLS certificate of {where} is not trusted: {exc.verify_message}.", permanent=True
        )
    if isinstance(exc, ssl.SSLError):
        return SmtpFailure(
            "tls", f"TLS with {where} failed ({exc.reason or exc}); check the port and security.", permanent=True
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return SmtpFailure(
            "sender_rejected",
            f"The server rejected the sender {exc.sender!r}: {exc.smtp_code} {_reply_text(exc.smtp_error)}",
            permanent=exc.smtp_code >= 500,
            code=exc.smtp_code,
        )
    if _caused_by_timeout(exc):
        return SmtpFailure("timeout", f"{where} did not answer within {settings.timeout_s:g} s.", permanent=False)
    if isinstance(exc, smtplib.SMTPConnectError):
        return SmtpFailure(
            "refused",
            f"{where} refused the session: {exc.smtp_code} {_reply_text(exc.smtp_error)}",
            permanent=exc.smtp_code >= 500,
            code=exc.smtp_code,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SmtpFailure("disconnected", f"{where} closed the connection unexpectedly.", permanent=False)
    if isinstance(exc, smtplib.SMTPResponseException):
        return SmtpFailure(
            "protocol",
            f"{where} answered {exc.smtp_code} {_reply_text(exc.smtp_error)}",
            permanent=exc.smtp_code >= 500,
            code=exc.smtp_code,
        )
    if isinstance(exc, OSError):
        return SmtpFailure("network", f"Cannot talk to {where}: {exc.strerror or type(exc).__name__}.", permanent=False)
    return SmtpFailure("protocol", f"SMTP error with {where}: {type(exc).__name__}.", permanent=False)


class SmtplibSession:
    def __init__(self, client: smtplib.SMTP, settings: SmtpSettings):
        self.client = client
        self.settings = settings

    def send(self, raw: bytes, sender: str, recipient: str) -> str:
        """Send one message to one recipient; SendRefused for a refusal, SmtpFailure when the session broke."""
        try:
            refused = self.client.sendmail(sender, [recipient], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients[recipient]
            raise SendRefused(code, _reply_text(reply)) from None
        except smtplib.SMTPDataError as exc:
            raise SendRefused(exc.smtp_code, _reply_text(exc.smtp_error), reason="message_rejected") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise classify(exc, self.settings) from None
        if refused:
            code, reply = refused[recipient]
            raise SendRefused(code, _reply_text(reply))
        return "250 accepted"

    def close(self) -> None:
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    return context


class _CheckedSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects only to an address the outbound policy checked (no DNS rebinding).

    The host name stays the TLS server name, so certificates are still verified against it.
    """

    def __init__(self, policy: OutboundPolicy, *args, **kwargs):
        self._policy = policy
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return self._policy.connect(host, port, timeout)


class _CheckedSMTP_SSL(smtplib.SMTP_SSL):  # noqa: N801 (smtplib's own spelling)
    def __init__(self, policy: OutboundPolicy, *args, **kwargs):
        self._policy = policy
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = self._policy.connect(host, port, timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


class SmtplibTransport:
    """One authenticated SMTP session; every socket operation is bounded by `timeout_s`."""

    def open(self, settings: SmtpSettings) -> MailSession:
        client: smtplib.SMTP | None = None
        try:
            context = tls_context(settings)
            if settings.security == "ssl":
                client = _client(smtplib.SMTP_SSL, _CheckedSMTP_SSL, settings, context=context)
            else:
                client = _client(smtplib.SMTP, _CheckedSMTP, settings)
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.username:
                client.login(settings.username, settings.password or "")
        except Exception as exc:
            if client is not None:
                client.close()
            raise classify(exc, settings) from None
        return SmtplibSession(client, settings)


def _client(plain: type, checked: type, settings: SmtpSettings, **kwargs) -> smtplib.SMTP:
    args = (settings.host, settings.port)
    kwargs.update(timeout=settings.timeout_s, local_hostname=settings.local_hostname)
    if settings.outbound is None:
        return plain(*args, **kwargs)
    return checked(settings.outbound, *args, **kwargs)


class RecordingTransport:
    """A fake for unit tests: keeps every message it is asked to send."""

    def __init__(self, refuse: dict[str, int] | None = None, fail_open: SmtpFailure | None = None):
        self.sent: list[tuple[str, str, EmailMessage]] = []
        self.refuse = refuse or {}
        self.fail_open = fail_open
        self.sessions = 0

    def open(self, settings: SmtpSettings) -> MailSession:
        if self.fail_open is not None:
            raise self.fail_open
        self.sessions += 1
        outer = self

        class _Session:
            def send(self, raw: bytes, sender: str, recipient: str) -> str:
                if recipient in outer.refuse:
                    raise SendRefused(outer.refuse[recipient], "refused by test")
                outer.sent.append((sender, recipient, message_from_bytes(raw, policy=default)))
                return "250 OK"

            def close(self) -> None:
                pass

        return _Session()


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str | None
    message: str
    steps: tuple[str, ...]
    sent_to: str | None = None


def check_connection(
    transport: Transport,
    settings: SmtpSettings,
    *,
    sender: str | None = None,
    send_to: str | None = None,
    now: datetime | None = None,
) -> CheckResult:
    """Connect, secure and log in (and optionally send one test message); say precisely what failed."""
    steps: list[str] = []
    login = f", logged in as {settings.username}" if settings.username else ""
    try:
        session = transport.open(settings)
    except SmtpFailure as exc:
        return CheckResult(False, exc.reason, exc.message, tuple(steps))
    steps.append(f"connected to {settings.host}:{settings.port} ({settings.security}){login}")
    try:
        if send_to and sender:
            message = EmailMessage(policy=SMTP)
            message["Subject"] = "BIApp Reports: test message"
            message["From"] = sender
            message["To"] = send_to
            message["Date"] = format_datetime(now or datetime.now(UTC))
            message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
            message.set_content(
                "This is a test message from BIApp Reports: your SMTP settings work and reports will be sent "
                f"through {settings.host}.\n"
            )
            try:
                session.send(message.as_bytes(), sender, send_to)
            except SendRefused as exc:
                return CheckResult(False, exc.reason, f"The server refused the test message: {exc}", tuple(steps))
            except SmtpFailure as exc:
                return CheckResult(False, exc.reason, exc.message, tuple(steps))
            steps.append(f"test message accepted for {send_to}")
    finally:
        session.close()
    summary = "; ".join(steps)
    return CheckResult(True, None, summary[:1].upper() + summary[1:] + ".", tuple(steps), send_to or None)
