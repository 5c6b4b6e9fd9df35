"""Deliver one execution: the ledger, not the broker, decides who still needs a copy.

Each (execution, destination) has a Delivery row: an email recipient, a webhook, a Slack or
a Teams channel. A pass sends only to rows still `pending` (services/mailer/sending.py: each
channel opened once, e.g. one SMTP session), and marks each `sent` in its own commit right
after the far end accepted it. Transient failures (connection, timeout, SMTP 4xx, HTTP 5xx
and 429) leave the row `pending` for a retry — after the time a Retry-After named, else with
the broker's backoff; permanent ones (SMTP 5xx, other HTTP 4xx, an invalid URL, a revoked
token) mark it `failed`; a channel failing as a whole (SMTP login refused) fails its rows.

A lease on the execution (shared/executions/leases.py) keeps two workers from sending the
same run at once; a heartbeat renews it, so a worker that died loses it within
BIAPP_LEASE_TTL_S. A message that finds the lease held elsewhere re-publishes itself for when
the lease ends instead of being lost. Transient failures are retried for
BIAPP_MAIL_RETRY_WINDOW_S after the first attempt, then the run closes as partial or failed.

Crash semantics: when the far end accepted a copy but the ledger write fails (the database is
away), the worker keeps its lease and retries the write, and never sends that copy again. The
one window left: a worker killed between the far end's OK and the ledger commit leaves that
one row `pending`, so it gets a second copy when the run resumes — at most one per crash,
carrying the same Message-ID (email) or `webhook-id` (webhooks) as the first, so receivers
that de-duplicate show it once. Every other destination gets exactly one copy.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import dramatiq
import sqlalchemy as sa

from services.mailer import content
from services.mailer.channels import build_channels
from services.mailer.channels.base import Job
from services.mailer.channels.email import EmailJob
from services.mailer.compose import PreparedMail
from services.mailer.sending import PassResult, as_targets, deliver_pass, record_outcome, retry_delay_ms
from services.mailer.transport import Transport
from shared import destinations, email_configs, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import BIAppError, PermanentError
from shared.messaging import DELIVER_REPORT, publish_after_commit
from shared.models import Artifact, Delivery, Destination, ReportExecution, ScheduledReport
from shared.outages import is_database_outage

log = logging.getLogger(__name__)


class RetryDelivery(dramatiq.Retry):
    """Some destinations hit a transient failure; Dramatiq retries the message (after `delay` ms if given)."""

    def __init__(self, message: str, delay: int | None = None):
        super().__init__(message, delay=delay)


def _claim(ctx: WorkerContext, execution_id: uuid.UUID, worker: str) -> executions.Claim:
    """rendered -> sending (first time) or resume, under our lease; the ledger rows are made on first claim."""
    with transaction(ctx.session_factory) as session:
        claim = executions.claim_send(
            session, execution_id, worker=worker, now=ctx.clock.now(), ttl_s=ctx.settings.lease_ttl_s
        )
        if claim.outcome == "ours":
            executions.insert_deliveries(session, claim.execution)
        elif claim.outcome == "done" and claim.execution is not None and claim.execution.status == "failed":
            # A run that failed before sending: only its failure notices (webhook/chat rows) are left.
            claim = executions.claim_failure_notices(
                session, execution_id, worker=worker, now=ctx.clock.now(), ttl_s=ctx.settings.lease_ttl_s
            )
        return claim


def load_secrets(ctx: WorkerContext, session, destination_ids) -> dict[uuid.UUID, dict]:
    """Decrypted settings of the given destinations; a missing one is simply absent (removed meanwhile)."""
    ids = [d for d in destination_ids if d is not None]
    if not ids:
        return {}
    found: dict[uuid.UUID, dict] = {}
    for destination in session.execute(sa.select(Destination).where(Destination.id.in_(ids))).scalars():
        try:
            found[destination.id] = destinations.open_secret(ctx.secrets, destination)
        except BIAppError as exc:
            found[destination.id] = {"unreadable": exc.message}
    return found


def _prepare(ctx: WorkerContext, exec_id: uuid.UUID) -> tuple[Job | None, list, list]:
    """The job and the pending rows due now, plus the instants of rows waiting for their Retry-After."""
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        execution = session.get(ReportExecution, exec_id)
        pending = list(
            session.execute(
                sa.select(Delivery)
                .where(Delivery.execution_id == exec_id, Delivery.status == "pending")
                .order_by(Delivery.kind.desc(), Delivery.recipient)
            ).scalars()
        )
        if not pending:
            return None, [], []
        due = [d for d in pending if d.next_attempt_at is None or d.next_attempt_at <= now]
        waiting = [d.next_attempt_at for d in pending if d not in due]
        if not due:
            return None, [], waiting
        report = session.get(ScheduledReport, execution.report_id)
        if execution.status == "failed":
            notification = content.failure_notification(ctx, execution, report)
            secrets = load_secrets(ctx, session, {d.destination_id for d in due})
            return Job(notification=notification, now=now), _without_unreadable(ctx, as_targets(due, secrets)), waiting
        artifacts = list(
            session.execute(
                sa.select(Artifact)
                .where(Artifact.execution_id == execution.id, Artifact.purged_at.is_(None))
                .order_by(Artifact.format)
            ).scalars()
        )
        subject, preview = content.report_subject_and_preview(ctx, session, execution, report, artifacts)
        notification = content.report_notification(ctx, execution, report, artifacts, preview, subject)
        job = Job(notification=notification, now=now)
        images = content.ChartImages()
        if any(d.channel == "email" for d in due):
            try:
                config = email_configs.effective(session, report.owner_id)
                smtp = email_configs.sending_settings(session, ctx.settings, ctx.secrets, config)
                mail = content.report_email(
                    ctx,
                    session,
                    execution,
                    report,
                    artifacts,
                    preview,
                    subject,
                    notification=notification,
                    render=images,
                )
                prepared = PreparedMail(
                    mail, sender=config.from_address, sender_name=config.from_name, reply_to=config.reply_to
                )
                job.email = EmailJob(smtp=smtp, sender=config.from_address, mail=prepared)
            except PermanentError as exc:
                job.email_error = exc.message
        secrets = load_secrets(ctx, session, {d.destination_id for d in due if d.channel != "email"})
        if any(secret.get("bot_token") for secret in secrets.values()):
            job.images = content.chart_pngs(notification, images)  # a Slack bot uploads them into its message
        targets = as_targets(due, secrets)
    return job, _without_unreadable(ctx, targets), waiting


def _without_unreadable(ctx: WorkerContext, targets):
    """Rows whose destination was removed or whose secret no key opens fail now; the rest go on."""
    usable = []
    for target in targets:
        if target.channel == "email":
            usable.append(target)
        elif not target.secret:
            _record(ctx, target.delivery_id, "failed", error="the destination was removed from the report")
        elif "unreadable" in target.secret:
            _record(ctx, target.delivery_id, "failed", error=target.secret["unreadable"])
        else:
            usable.append(target)
    return usable


def deliver_execution(ctx: WorkerContext, transport: Transport, execution_id: str, channels=None) -> None:
    exec_id = uuid.UUID(execution_id)
    extra = {"execution_id": execution_id}
    worker = executions.new_token(ctx.worker_id)
    claim = _claim(ctx, exec_id, worker)
    if claim.outcome == "busy":
        # Another worker holds the run (or died holding it): look again when its lease runs out.
        publish_after_commit(ctx.publisher, DELIVER_REPORT, execution_id, delay_ms=int((claim.wait_s + 1) * 1000))
        log.info("deliver postponed: another worker holds the run", extra=extra)
        return
    if claim.outcome != "ours":
        log.info("deliver skipped: nothing left to send", extra=extra)
        return
    lease = executions.LeaseKeeper(
        ctx.session_factory, exec_id, worker=worker, clock=ctx.clock, ttl_s=ctx.settings.lease_ttl_s
    )
    try:
        with lease:
            _send_pending(ctx, channels or build_channels(ctx.settings, transport), exec_id, lease)
    finally:
        try:
            with transaction(ctx.session_factory) as session:
                executions.release(session, exec_id, worker=worker)
        except Exception as exc:  # the lease then simply runs out
            if not is_database_outage(exc):
                raise


def _send_pending(ctx: WorkerContext, channels, exec_id: uuid.UUID, lease) -> None:
    extra = {"execution_id": str(exec_id)}
    try:
        job, targets, waiting = _prepare(ctx, exec_id)
    except PermanentError as exc:
        _close(ctx, exec_id, failure=exc.message)
        return
    if job is None and not waiting:
        _close(ctx, exec_id)
        return
    notices = job is not None and job.notification.failed
    result = PassResult()
    if job is not None and targets:
        result = deliver_pass(channels, job, targets, lease, record=lambda *a, **k: _record(ctx, *a, **k), extra=extra)
        if result.lease_lost:
            return
    if result.transient_left or waiting:
        _retry_or_close(ctx, exec_id, result, waiting, extra)
    elif not notices:
        _close(ctx, exec_id, failure=result.failure)


def _record(ctx, delivery_id, status, **outcome) -> None:
    record_outcome(ctx, Delivery, delivery_id, status, **outcome)


def _retry_or_close(ctx: WorkerContext, exec_id: uuid.UUID, result: PassResult, waiting, extra: dict) -> None:
    """Retry the destinations not yet reached while the run is inside its retry window, else close it."""
    with transaction(ctx.session_factory) as session:
        # A failed run's notices count from its failure; a sent run's copies from the start of sending.
        started = session.execute(
            sa.select(sa.func.coalesce(ReportExecution.sending_at, ReportExecution.finished_at)).where(
                ReportExecution.id == exec_id
            )
        ).scalar_one_or_none()
    now = ctx.clock.now()
    if started is None or now - started >= timedelta(seconds=ctx.settings.mail_retry_window_s):
        log.warning("delivery gave up: the retry window (BIAPP_MAIL_RETRY_WINDOW_S) is over", extra=extra)
        _close(ctx, exec_id, failure=result.failure)
        return
    window_end = started + timedelta(seconds=ctx.settings.mail_retry_window_s)
    delay = retry_delay_ms(result, waiting, now, window_end)
    log.warning("delivery will retry for destinations not yet reached", extra={**extra, "delay_ms": delay})
    raise RetryDelivery(str(exec_id), delay=delay)


def _close(ctx: WorkerContext, exec_id: uuid.UUID, failure: str | None = None) -> None:
    """Close a sending run from its ledger; a failed run's notices still pending simply fail (it stays failed)."""
    with transaction(ctx.session_factory) as session:
        if executions.close_from_ledger(session, exec_id, now=ctx.clock.now(), failure=failure) is None:
            executions.give_up_notices(session, exec_id, failure or "not delivered: the retry window is over")
