"""The one interface every delivery channel implements.

A channel is opened once per run (`open`), which may fail for all of its destinations at
once (an SMTP login refused); the session then sends to one ledger row at a time. Each send
ends in exactly one of: `Accepted` (the far end took it; record it and never send again),
`Refused` (this destination only: permanent, or transient with an optional time to wait), or
`ChannelDown` (the channel itself failed; the rows not yet tried share its fate).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.mailer.notification import Notification

ANSWER_LIMIT = 500


def short(text: str | None, limit: int = ANSWER_LIMIT) -> str:
    """A remote answer as stored: one line, at most `limit` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Target:
    """One ledger row to deliver, with its destination's (decrypted) settings."""

    delivery_id: uuid.UUID
    channel: str
    address: str  # email address, or `<channel>:<destination id>`
    role: str  # to | cc (email)
    target: str  # display: the address or host
    secret: dict = field(default_factory=dict, repr=False)  # url / webhook_url / bot_token / channel / signing_secret


@dataclass(frozen=True)
class Accepted:
    answer: str
    message_id: str | None = None


class Refused(Exception):
    """This destination did not take it: permanent (fail the row) or transient (retry later)."""

    def __init__(self, message: str, *, permanent: bool, answer: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.answer = short(answer) if answer is not None else None
        self.retry_after_s = retry_after_s


class ChannelDown(Exception):
    """The channel failed as a whole (login refused, server unreachable): every row left shares it."""

    def __init__(self, message: str, *, permanent: bool, reason: str = "channel"):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.reason = reason


@dataclass
class Job:
    """What one delivery pass sends: the channel-neutral notification, plus email's own prepared mail."""

    notification: Notification
    now: datetime
    email: object | None = None  # services.mailer.channels.email.EmailJob, when email rows are pending
    email_error: str | None = None  # why email cannot be prepared (an unreadable SMTP password)
    images: tuple[bytes, ...] = ()


class ChannelSession(Protocol):
    def send(self, target: Target) -> Accepted: ...

    def close(self) -> None: ...


class Channel(Protocol):
    kind: str

    def open(self, job: Job) -> ChannelSession: ...
