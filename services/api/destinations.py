"""Destinations on reports and alerts: the schema, applying an edit, and the test and rotate routes.

`destinations` is the full list (email, webhook, Slack, Teams). `recipients` and `cc` stay
accepted as email destinations: given alone on an edit they replace only the email
destinations, so an older client cannot drop a webhook it does not know about.
"""

from __future__ import annotations

import uuid

from marshmallow import Schema, fields

from services.api.limits import limiter
from services.api.runtime import db, runtime
from services.api.security import me
from services.mailer.channels import build_channels
from services.mailer.channels.base import ChannelDown, Job, Refused, Target
from services.mailer.notification import Notification
from services.mailer.transport import SmtplibTransport
from shared import destinations, email_configs
from shared.errors import FieldError, NotFoundError, ValidationFailedError
from shared.models.destinations import Destination
from shared.smtp import check_connection


def _nested(errors: dict) -> dict:
    """`destinations.0.url` -> {"destinations": {"0": {"url": [...]}}}, as marshmallow reports list items."""
    tree: dict = {}
    for key, messages in errors.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = messages
    return tree


def apply(owner, data: dict) -> None:
    """Turn the validated destination fields of `data` into the owner's Destination rows (in place)."""
    try:
        _apply(owner, data)
    except FieldError as exc:
        raise ValidationFailedError(exc.message, errors=_nested(exc.errors)) from None


def _apply(owner, data: dict) -> None:
    rt = runtime()
    if "destinations" in data:
        owner.destinations = destinations.build(
            data.pop("destinations"), list(owner.destinations), rt.secrets, rt.settings
        )
    elif "email_only" in data:
        others = [d for d in owner.destinations if d.kind != "email"]
        items = [{"kind": d.kind, "id": d.id} for d in others] + data.pop("email_only")
        owner.destinations = destinations.build(items, list(owner.destinations), rt.secrets, rt.settings)
    data.pop("email_only", None)


def find(owner, destination_id: uuid.UUID) -> Destination:
    for destination in owner.destinations:
        if destination.id == destination_id:
            return destination
    raise NotFoundError("no such destination")


class DestinationTestResultSchema(Schema):
    ok = fields.Boolean()
    kind = fields.String()
    target = fields.String()
    outcome = fields.String(metadata={"description": "accepted | refused (permanent) | deferred (transient)"})
    answer = fields.String(allow_none=True, metadata={"description": "what the far end said, truncated"})
    error = fields.String(allow_none=True)


class RotatedSecretSchema(Schema):
    id = fields.UUID()
    signing_secret = fields.String()


def _test_key() -> str:
    return f"connection-test:{me().id}"


test_limit = limiter.limit(lambda: runtime().settings.connection_test_rate_limit, key_func=_test_key)


def send_test(owner, destination: Destination, *, what: str) -> dict:
    """Send one test message to one destination now and say what the far end answered."""
    rt = runtime()
    now = rt.clock.now()
    base = {"kind": destination.kind, "target": destination.target}
    if destination.kind == "email":
        return {**base, **_test_email(owner, destination)}
    notification = Notification(
        type="destination.test",
        subject=f"Test message for {owner.name}",
        headline=f"This destination is set up: the {what} {owner.name} will be delivered here.",
        name=owner.name,
        object_kind=what,
        object_id=str(owner.id),
        run_id=str(uuid.uuid4()),
        status="test",
        timezone=owner.timezone or "UTC",
        scheduled_for=now,
        open_url=f"{rt.settings.public_url}/api/{'scheduled-reports' if what == 'report' else 'alerts'}/{owner.id}",
    )
    target = Target(
        delivery_id=uuid.uuid4(),
        channel=destination.kind,
        address=destinations.ledger_key(destination.kind, None, destination.id),
        role="to",
        target=destination.target,
        secret=destinations.open_secret(rt.secrets, destination),
    )
    channel = build_channels(rt.settings, SmtplibTransport())[destination.kind]
    try:
        session = channel.open(Job(notification=notification, now=now))
        try:
            accepted = session.send(target)
        finally:
            session.close()
    except Refused as exc:
        outcome = "refused" if exc.permanent else "deferred"
        return {**base, "ok": False, "outcome": outcome, "answer": exc.answer, "error": exc.message}
    except ChannelDown as exc:
        return {**base, "ok": False, "outcome": "refused" if exc.permanent else "deferred", "error": exc.message}
    return {**base, "ok": True, "outcome": "accepted", "answer": accepted.answer}


def _test_email(owner, destination: Destination) -> dict:
    rt = runtime()
    session = db()
    config = email_configs.effective(session, owner.owner_id)
    smtp = email_configs.sending_settings(session, rt.settings, rt.secrets, config)
    result = check_connection(
        SmtplibTransport(), smtp, sender=config.from_address, send_to=destination.address, now=rt.clock.now()
    )
    return {
        "ok": result.ok,
        "outcome": "accepted" if result.ok else "refused",
        "answer": result.message,
        "error": None if result.ok else result.message,
    }


def rotate(destination: Destination) -> dict:
    rt = runtime()
    try:
        secret = destinations.rotate_signing_secret(rt.secrets, destination)
    except FieldError:
        raise FieldError("destination_id", "only webhook destinations have a signing secret") from None
    return {"id": destination.id, "signing_secret": secret}
