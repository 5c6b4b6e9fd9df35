"""Deliver one alert event: one private message per recipient over one SMTP session.

The same lease-and-ledger scheme as a report run (shared/executions): the worker takes
the event's delivery lease (renewed by a heartbeat, taken over as soon as it runs out),
sends to the ledger rows (AlertDelivery, one per recipient) still `pending`, and marks
each `sent` in its own commit right after the server accepted it, retrying that write
while the database is away; a redelivered or duplicated message finds nothing pending
and sends nothing. Transient failures leave rows `pending` for a retry with backoff
for BIAPP_MAIL_RETRY_WINDOW_S from the first attempt; permanent ones mark them
`failed`. The one window left is a crash between the server's OK and the record (a
second copy, with the same Message-ID).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.mailer.compose import MailContent, PreparedMail, compose_body, message_id_for, subject_line
from services.mailer.transport import SendRefused, SmtpFailure, Transport
from shared import alerts, email_configs, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import PermanentError
from shared.messaging import DELIVER_ALERT, publish_after_commit
from shared.metrics import DELIVERIES
from shared.models import Alert, AlertDelivery, AlertEvent
from shared.outages import is_database_outage

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


# How long an accepted copy's record is retried before the worker gives up (and crashes loudly).
RECORD_PATIENCE_S = 600


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


def _pending(ctx: WorkerContext, event_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str]]:
    """Recipients not yet reached (`sending` rows are left by the claim scheme of older versions)."""
    with ctx.session_factory() as session:
        return [
            tuple(row)
            for row in session.execute(
                sa.select(AlertDelivery.id, AlertDelivery.recipient, AlertDelivery.kind)
                .where(AlertDelivery.event_id == event_id, AlertDelivery.status.in_(("pending", "sending")))
                .order_by(AlertDelivery.kind.desc(), AlertDelivery.recipient)
            ).all()
        ]


def _set(ctx: WorkerContext, delivery_ids, status: str, *, error: str | None = None, message_id=None) -> None:
    with transaction(ctx.session_factory) as session:
        for delivery_id in delivery_ids:
            executions.record_delivery(
                session,
                delivery_id,
                status,
                now=ctx.clock.now(),
                error=error,
                message_id=message_id,
                model=AlertDelivery,
            )


def deliver_event(ctx: WorkerContext, transport: Transport, event_id: str) -> int:
    """Send the event's notification to everyone not yet reached; returns how many copies went out."""
    event_uuid = uuid.UUID(event_id)
    extra = {"event_id": event_id}
    worker = executions.new_token(ctx.worker_id)
    with transaction(ctx.session_factory) as session:
        claim = executions.claim_alert_delivery(
            session, event_uuid, worker=worker, now=ctx.clock.now(), ttl_s=ctx.settings.lease_ttl_s
        )
    if claim.outcome == "busy":
        publish_after_commit(ctx.publisher, DELIVER_ALERT, event_id, delay_ms=int((claim.wait_s + 1) * 1000))
        log.info("alert delivery postponed: another worker holds it", extra=extra)
        return 0
    if claim.outcome != "ours":
        log.info("alert delivery skipped: nothing left to send", extra=extra)
        return 0
    lease = executions.LeaseKeeper(
        ctx.session_factory,
        event_uuid,
        worker=worker,
        clock=ctx.clock,
        ttl_s=ctx.settings.lease_ttl_s,
        model=AlertEvent,
    )
    try:
        with lease:
            return _send(ctx, transport, event_uuid, lease, extra)
    finally:
        try:
            with transaction(ctx.session_factory) as session:
                executions.release(session, event_uuid, worker=worker, model=AlertEvent)
        except Exception as exc:  # the lease then simply runs out
            if not is_database_outage(exc):
                raise


def _send(ctx: WorkerContext, transport: Transport, event_uuid: uuid.UUID, lease, extra: dict) -> int:
    claimed = _pending(ctx, event_uuid)
    if not claimed:
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
            if lease.lost:
                log.warning("lease lost; another worker resumes the delivery", extra=extra)
                return sent
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
            executions.record_accepted(
                lambda d=delivery_id, m=message_id: _set(ctx, [d], "sent", message_id=m),
                patience_s=RECORD_PATIENCE_S,
                extra=extra,
            )
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
    """Pending rows left: retry while the event is inside its retry window, else give them up as failed."""
    with transaction(ctx.session_factory) as session:
        pending = AlertDelivery.event_id == event_id, AlertDelivery.status.in_(("pending", "sending"))
        if session.execute(sa.select(AlertDelivery.id).where(*pending).limit(1)).first() is None:
            return
        since = session.execute(
            sa.select(AlertEvent.delivering_since).where(AlertEvent.id == event_id)
        ).scalar_one_or_none()
        if since is None or ctx.clock.now() - since >= timedelta(seconds=ctx.settings.mail_retry_window_s):
            session.execute(
                sa.update(AlertDelivery)
                .where(*pending)
                .values(status="failed", error=sa.func.coalesce(AlertDelivery.error, "not delivered"))
                .execution_options(synchronize_session=False)
            )
            log.warning("alert delivery gave up: the retry window (BIAPP_MAIL_RETRY_WINDOW_S) is over", extra=extra)
            return
    log.warning("alert delivery will retry for recipients not yet reached", extra=extra)
    raise RetryAlertDelivery(str(event_id))
