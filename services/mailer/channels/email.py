"""Email: one private message per recipient over one SMTP session per run."""

from __future__ import annotations

from dataclasses import dataclass

from services.mailer.channels.base import Accepted, ChannelDown, Job, Refused, Target
from services.mailer.compose import PreparedMail, message_id_for
from services.mailer.transport import MailSession, SendRefused, SmtpFailure, SmtpSettings, Transport


@dataclass(frozen=True)
class EmailJob:
    smtp: SmtpSettings
    sender: str
    mail: PreparedMail


class EmailChannel:
    kind = "email"

    def __init__(self, transport: Transport):
        self.transport = transport

    def open(self, job: Job) -> _EmailSession:
        if job.email_error is not None:
            raise ChannelDown(job.email_error, permanent=True, reason="configuration")
        email: EmailJob = job.email  # type: ignore[assignment]
        try:
            session = self.transport.open(email.smtp)
        except SmtpFailure as exc:
            raise ChannelDown(exc.message, permanent=exc.permanent, reason=exc.reason) from None
        return _EmailSession(session, email, job)


class _EmailSession:
    def __init__(self, session: MailSession, email: EmailJob, job: Job):
        self.session = session
        self.email = email
        self.job = job

    def send(self, target: Target) -> Accepted:
        message_id = message_id_for(target.delivery_id, self.email.sender)
        raw = self.email.mail.for_recipient(target.address, kind=target.role, now=self.job.now, message_id=message_id)
        try:
            reply = self.session.send(raw, self.email.sender, target.address)
        except SendRefused as exc:
            raise Refused(str(exc), permanent=exc.permanent, answer=str(exc)) from None
        except SmtpFailure as exc:
            raise ChannelDown(exc.message, permanent=exc.permanent, reason=exc.reason) from None
        return Accepted(reply or "250", message_id=message_id)

    def close(self) -> None:
        self.session.close()
