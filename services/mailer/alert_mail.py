"""Deliver one alert event to its destinations: one private email per recipient over one SMTP
session, and one message per webhook, Slack or Teams destination (services/mailer/sending.py).

The same lease-and-ledger scheme as a report run (shared/executions): the worker takes
the event's delivery lease (renewed by a heartbeat, taken over as soon as it runs out),
sends to the ledger rows (AlertDelivery, one per destination) still `pending`, and marks
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

import dramatiq
import sqlalchemy as sa

from services.mailer.channels import build_channels
from services.mailer.channels.base import Job
from services.mailer.channels.email import EmailJob
from services.mailer.compose import MailContent, PreparedMail, compose_body, subject_line
from services.mailer.content import alert_notification
from services.mailer.deliver import load_secrets
from services.mailer.sending import PassResult, as_targets, deliver_pass, record_outcome, retry_delay_ms
from services.mailer.transport import Transport
from shared import alerts, email_configs, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import PermanentError
from shared.messaging import DELIVER_ALERT, publish_after_commit
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


class RetryAlertDelivery(dramatiq.Retry):
    """Some destinations hit a transient failure; Dramatiq retries the message (after `delay` ms if given)."""

    def __init__(self, message: str, delay: int | None = None):
        super().__init__(message, delay=delay)


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


def _record(ctx: WorkerContext, delivery_id, status: str, **outcome) -> None:
    record_outcome(ctx, AlertDelivery, delivery_id, status, **outcome)


def deliver_event(ctx: WorkerContext, transport: Transport, event_id: str, channels=None) -> int:
    """Send the event's notification to every destination not yet reached; returns how many copies went out."""
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
            return _send(ctx, channels or build_channels(ctx.settings, transport), event_uuid, lease, extra)
    finally:
        try:
            with transaction(ctx.session_factory) as session:
                executions.release(session, event_uuid, worker=worker, model=AlertEvent)
        except Exception as exc:  # the lease then simply runs out
            if not is_database_outage(exc):
                raise


def _prepare(ctx: WorkerContext, event_uuid: uuid.UUID):
    """The job and the rows due now (`sending` rows are left by the claim scheme of older versions),
    plus the instants of rows waiting for a Retry-After; (None, [], []) when the alert is gone."""
    now = ctx.clock.now()
    with ctx.session_factory() as session:
        pending = list(
            session.execute(
                sa.select(AlertDelivery)
                .where(AlertDelivery.event_id == event_uuid, AlertDelivery.status.in_(("pending", "sending")))
                .order_by(AlertDelivery.kind.desc(), AlertDelivery.recipient)
            ).scalars()
        )
        due = [d for d in pending if d.next_attempt_at is None or d.next_attempt_at <= now]
        waiting = [d.next_attempt_at for d in pending if d not in due]
        event = session.get(AlertEvent, event_uuid)
        alert = session.get(Alert, event.alert_id) if event is not None else None
        if alert is None or not due:
            return None, [], waiting if alert is not None else []
        mail = content_for(ctx, alert, event)
        job = Job(notification=alert_notification(ctx, alert, event, mail.subject), now=now)
        if any(d.channel == "email" for d in due):
            try:
                config = email_configs.effective(session, alert.owner_id)
                smtp = email_configs.sending_settings(session, ctx.settings, ctx.secrets, config)
                prepared = PreparedMail(
                    mail, sender=config.from_address, sender_name=config.from_name, reply_to=config.reply_to
                )
                job.email = EmailJob(smtp=smtp, sender=config.from_address, mail=prepared)
            except PermanentError as exc:
                job.email_error = exc.message
        secrets = load_secrets(ctx, session, {d.destination_id for d in due if d.channel != "email"})
        targets = as_targets(due, secrets)
    usable = []
    for target in targets:
        problem = None
        if target.channel != "email" and not target.secret:
            problem = "the destination was removed from the alert"
        elif "unreadable" in target.secret:
            problem = target.secret["unreadable"]
        if problem:
            _record(ctx, target.delivery_id, "failed", error=problem)
        else:
            usable.append(target)
    return job, usable, waiting


def _send(ctx: WorkerContext, channels, event_uuid: uuid.UUID, lease, extra: dict) -> int:
    job, targets, waiting = _prepare(ctx, event_uuid)
    result = PassResult()
    if job is not None and targets:
        result = deliver_pass(channels, job, targets, lease, record=lambda *a, **k: _record(ctx, *a, **k), extra=extra)
        if result.lease_lost:
            return result.sent
    if result.transient_left or waiting:
        _retry_or_give_up(ctx, event_uuid, result, waiting, extra)
    return result.sent


def _retry_or_give_up(ctx: WorkerContext, event_id: uuid.UUID, result: PassResult, waiting, extra: dict) -> None:
    """Pending rows left: retry while the event is inside its retry window, else give them up as failed."""
    with transaction(ctx.session_factory) as session:
        pending = AlertDelivery.event_id == event_id, AlertDelivery.status.in_(("pending", "sending"))
        if session.execute(sa.select(AlertDelivery.id).where(*pending).limit(1)).first() is None:
            return
        since = session.execute(
            sa.select(AlertEvent.delivering_since).where(AlertEvent.id == event_id)
        ).scalar_one_or_none()
        now = ctx.clock.now()
        window = timedelta(seconds=ctx.settings.mail_retry_window_s)
        if since is None or now - since >= window:
            session.execute(
                sa.update(AlertDelivery)
                .where(*pending)
                .values(status="failed", error=sa.func.coalesce(AlertDelivery.error, "not delivered"))
                .execution_options(synchronize_session=False)
            )
            log.warning("alert delivery gave up: the retry window (BIAPP_MAIL_RETRY_WINDOW_S) is over", extra=extra)
            return
    delay = retry_delay_ms(result, waiting, now, since + window)
    log.warning("alert delivery will retry for destinations not yet reached", extra=extra)
    raise RetryAlertDelivery(str(event_id), delay=delay)
