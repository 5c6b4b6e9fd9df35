"""Deliver one alert event: one private message per recipient over one SMTP session.

The ledger (AlertDelivery, one row per recipient) decides who still needs a copy.
A worker claims rows with one guarded UPDATE (pending -> sending, stamped with its
id), sends, and marks each row `sent` in its own commit right after the server
accepted it; a redelivered or duplicated message finds nothing pending and sends
nothing. A row left `sending` by a worker that died is taken over once its claim
is older than the SMTP timeout allows a live send to take (at most one extra copy
per crash, with the same Message-ID). Transient failures leave rows `pending` for a
retry with backoff; permanent ones mark them `failed`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.mailer.compose import MailContent, PreparedMail, compose_body, message_id_for, subject_line
from services.mailer.transport import SendRefused, SmtpFailure, Transport
from shared import alerts, email_configs
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import PermanentError
from shared.metrics import DELIVERIES
from shared.models import Alert, AlertDelivery, AlertEvent

log = logging.getLogger(__name__)

BODY = """{{ headline }}

Alert: {{ alert_name }}
Condition: {{ condition }}
Observed: {{ observed }}
Result: {{ result }}
Evaluated: {{ evaluated_at }}
{% if error %}Error: {{ error }}
{% endif %}{% if link %}
History: {{ link }}
{% endif %}"""

HEADLINES = {
    "triggered": "The condition of your alert is true.",
    "recovered": "The condition of your alert is no longer true.",
    "error": "Your alert could not be evaluated.",
}


class RetryAlertDelivery(Exception):
    """Some recipients hit a transient failure; Dramatiq retries the message with backoff."""


def _stale_after(ctx: WorkerContext) -> timedelta:
    # A live worker finishes one recipient within a few SMTP timeouts; a claim older than this was abandoned.
    return timedelta(seconds=max(30, 4 * ctx.settings.smtp_timeout_s))


def content_for(ctx: WorkerContext, alert: Alert, event: AlertEvent) -> MailContent:
    """Subject `[Alert] <name>: <condition> (observed <value>)`, text and HTML with the local evaluation time."""
    condition = alerts.parse_condition(alert.condition)
    reason = event.notify_reason or "triggered"
    zone = ZoneInfo(alert.timezone or "UTC")
    evaluated = (event.evaluated_at or ctx.clock.now()).astimezone(zone)
    subject = subject_line(alerts.subject_line(alert.name, condition, reason, event.observed, event.error))
    base = (ctx.settings.public_url or "").rstrip("/")
    context = {
        "headline": HEADLINES.get(reason, HEADLINES["triggered"]),
        "alert_name": alert.name,
        "condition": alerts.describe(condition),
        "observed": "n/a" if event.state == "error" else alerts.json_value(event.observed),
        "result": event.message or event.state,
        "evaluated_at": f"{evaluated:%Y-%m-%d %H:%M:%S %Z} ({alert.timezone or 'UTC'})",
        "error": event.error,
        "link": f"{base}/api/alerts/{alert.id}/events" if base else None,
    }
    text, html = compose_body(BODY, context, subject=subject, preview=None, attachments=(), links=())
    return MailContent(subject, text, html)


def _claim(ctx: WorkerContext, event_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str]]:
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        return [
            tuple(row)
            for row in session.execute(
                sa.update(AlertDelivery)
                .where(
                    AlertDelivery.event_id == event_id,
                    sa.or_(
                        AlertDelivery.status == "pending",
                        sa.and_(AlertDelivery.status == "sending", AlertDelivery.claimed_at < now - _stale_after(ctx)),
                    ),
                )
                .values(status="sending", claimed_by=ctx.worker_id, claimed_at=now)
                .returning(AlertDelivery.id, AlertDelivery.recipient, AlertDelivery.kind)
                .execution_options(synchronize_session=False)
            ).all()
        ]


def _set(ctx: WorkerContext, delivery_ids, status: str, *, error: str | None = None, message_id=None) -> None:
    values: dict = {"status": status, "attempts": AlertDelivery.attempts + 1, "error": error}
    if status == "sent":
        values.update(sent_at=ctx.clock.now(), message_id=message_id)
    with transaction(ctx.session_factory) as session:
        session.execute(
            sa.update(AlertDelivery)
            .where(
                AlertDelivery.id.in_(list(delivery_ids)),
                AlertDelivery.status == "sending",
                AlertDelivery.claimed_by == ctx.worker_id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def deliver_event(ctx: WorkerContext, transport: Transport, event_id: str) -> int:
    """Send the event's notification to everyone not yet reached; returns how many copies went out."""
    event_uuid = uuid.UUID(event_id)
    extra = {"event_id": event_id}
    claimed = _claim(ctx, event_uuid)
    if not claimed:
        log.info("alert delivery skipped: nothing left to send", extra=extra)
        return 0
    ids = [row[0] for row in claimed]
    try:
        with ctx.session_factory() as session:
            event = session.get(AlertEvent, event_uuid)
            alert = session.get(Alert, event.alert_id) if event is not None else None
            if alert is None:
                return 0  # deleted meanwhile, ledger and all
            config = email_configs.effective(session, alert.owner_id)
            smtp = email_configs.sending_settings(session, ctx.settings, ctx.secrets, config)
            mail = PreparedMail(
                content_for(ctx, alert, event),
                sender=config.from_address,
                sender_name=config.from_name,
                reply_to=config.reply_to,
            )
            sender = config.from_address
    except PermanentError as exc:
        _set(ctx, ids, "failed", error=exc.message)
        DELIVERIES.labels("failed").inc(len(ids))
        return 0
    try:
        smtp_session = transport.open(smtp)
    except SmtpFailure as exc:
        return _session_failed(ctx, event_uuid, ids, exc, extra)
    sent = 0
    try:
        for index, (delivery_id, recipient, kind) in enumerate(claimed):
            message_id = message_id_for(delivery_id, sender)
            raw = mail.for_recipient(recipient, kind=kind, now=ctx.clock.now(), message_id=message_id)
            try:
                smtp_session.send(raw, sender, recipient)
            except SendRefused as exc:
                _set(ctx, [delivery_id], "failed" if exc.permanent else "pending", error=str(exc))
                DELIVERIES.labels("refused" if exc.permanent else "deferred").inc()
                continue
            except SmtpFailure as exc:
                return sent + _session_failed(ctx, event_uuid, ids[index:], exc, extra)
            _set(ctx, [delivery_id], "sent", message_id=message_id)
            DELIVERIES.labels("sent").inc()
            sent += 1
    finally:
        smtp_session.close()
    _retry_or_close(ctx, event_uuid, extra)
    return sent


def _session_failed(ctx, event_id, ids, failure: SmtpFailure, extra: dict) -> int:
    DELIVERIES.labels("failed" if failure.permanent else "deferred").inc(len(ids))
    _set(ctx, ids, "failed" if failure.permanent else "pending", error=failure.message)
    log.warning("SMTP session failed (%s): %s", failure.reason, failure.message, extra=extra)
    _retry_or_close(ctx, event_id, extra)
    return 0


def _retry_or_close(ctx: WorkerContext, event_id: uuid.UUID, extra: dict) -> None:
    """Pending rows left: retry while they have attempts left, else give them up as failed."""
    with transaction(ctx.session_factory) as session:
        pending = AlertDelivery.event_id == event_id, AlertDelivery.status == "pending"
        worst = session.execute(sa.select(sa.func.max(AlertDelivery.attempts)).where(*pending)).scalar_one()
        if worst is None:
            return
        if worst > ctx.settings.mail_max_retries:
            session.execute(
                sa.update(AlertDelivery)
                .where(*pending)
                .values(status="failed")
                .execution_options(synchronize_session=False)
            )
            return
    log.warning("alert delivery will retry for recipients not yet reached", extra=extra)
    raise RetryAlertDelivery(str(event_id))
