"""SMTP behind a small interface: the real smtplib transport and a recording fake."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str | None
    password: str | None
    timeout_s: float = 30
    verify_tls: bool = True


class SendRefused(Exception):
    """The server refused one message; `code` tells whether a retry may help."""

    def __init__(self, code: int, reply: str):
        super().__init__(f"{code} {reply}")
        self.code = code
        self.reply = reply

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class MailSession(Protocol):
    def send(self, message: EmailMessage, sender: str, recipient: str) -> str: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open(self, settings: SmtpSettings) -> MailSession: ...


class SmtplibSession:
    def __init__(self, client: smtplib.SMTP):
        self.client = client

    def send(self, message: EmailMessage, sender: str, recipient: str) -> str:
        try:
            refused = self.client.send_message(message, from_addr=sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients[recipient]
            raise SendRefused(
                code, reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            raise SendRefused(exc.smtp_code, exc.smtp_error.decode(errors="replace")) from None
        except smtplib.SMTPDataError as exc:
            raise SendRefused(exc.smtp_code, exc.smtp_error.decode(errors="replace")) from None
        if refused:
            code, reply = refused[recipient]
            raise SendRefused(code, str(reply))
        return "250 OK"

    def close(self) -> None:
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


class SmtplibTransport:
    def open(self, settings: SmtpSettings) -> MailSession:
        context = ssl.create_default_context()
        if not settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_s, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        try:
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.username:
                client.login(settings.username, settings.password or "")
        except BaseException:
            client.close()
            raise
        return SmtplibSession(client)


class RecordingTransport:
    """A fake for unit tests: keeps every message it is asked to send."""

    def __init__(self, refuse: dict[str, int] | None = None):
        self.sent: list[tuple[str, str, EmailMessage]] = []
        self.refuse = refuse or {}

    def open(self, settings: SmtpSettings) -> MailSession:
        outer = self

        class _Session:
            def send(self, message: EmailMessage, sender: str, recipient: str) -> str:
                if recipient in outer.refuse:
                    raise SendRefused(outer.refuse[recipient], "refused by test")
                outer.sent.append((sender, recipient, message))
                return "250 OK"

            def close(self) -> None:
                pass

        return _Session()
