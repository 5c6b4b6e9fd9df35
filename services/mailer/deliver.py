"""Deliver one execution: the ledger, not the broker, decides who still needs a copy.

Each (execution, recipient) has a Delivery row. A run sends only to rows still
`pending`, over one SMTP session, and marks each `sent` in its own commit right
after the server accepted it. Transient failures (connection, timeout, 4xx) leave
the row `pending` for a retry with backoff; permanent ones (5xx for a recipient)
mark it `failed`; authentication, TLS and a refused sender fail every row at once.

A lease on the execution (shared/executions/leases.py) keeps two workers from
sending the same run at once; a heartbeat renews it, so a worker that died loses it
within BIAPP_LEASE_TTL_S. A message that finds the lease held elsewhere re-publishes
itself for when the lease ends instead of being lost. Transient failures are retried
with capped backoff for BIAPP_MAIL_RETRY_WINDOW_S after the first attempt.

Crash semantics: when the server accepted a copy but the ledger write fails (the
database is away), the worker keeps its lease and retries the write, and never
sends that copy again. The one window left: a worker killed between the server's
`250` and the ledger commit leaves that one recipient `pending`, so it gets a second
copy when the run resumes — at most one message per crash, carrying the same
Message-ID as the first (mail clients that de-duplicate by Message-ID show it once).
Every other recipient gets exactly one copy.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.mailer.compose import (
    DownloadLink,
    MailContent,
    PreparedMail,
    compose_body,
    message_id_for,
    render_subject,
)
from services.mailer.files import plan_files, read_preview
from services.mailer.transport import SendRefused, SmtpFailure, SmtpSettings, Transport
from shared import email_configs, executions, links
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import PermanentError
from shared.messaging import DELIVER_REPORT, publish_after_commit
from shared.metrics import DELIVERIES
from shared.models import Artifact, Delivery, EmailConfig, ReportExecution, ScheduledReport
from shared.outages import is_database_outage
from shared.templates import template_context

log = logging.getLogger(__name__)


class RetryDelivery(Exception):
    """Some recipients hit a transient failure; Dramatiq retries the message with backoff."""


# How long an accepted copy's record is retried before the worker gives up (and crashes loudly).
RECORD_PATIENCE_S = 600


@dataclass(frozen=True)
class Outgoing:
    smtp: SmtpSettings
    config: EmailConfig
    mail: PreparedMail


def _claim(ctx: WorkerContext, execution_id: uuid.UUID, worker: str) -> executions.Claim:
    """rendered -> sending (first time) or resume, under our lease; the ledger rows are made on first claim."""
    with transaction(ctx.session_factory) as session:
        claim = executions.claim_send(
            session, execution_id, worker=worker, now=ctx.clock.now(), ttl_s=ctx.settings.lease_ttl_s
        )
        if claim.outcome == "ours":
            executions.insert_deliveries(session, claim.execution)
        return claim


def _content(ctx: WorkerContext, session, execution: ReportExecution, report: ScheduledReport) -> MailContent:
    zone = ZoneInfo(report.timezone or "UTC")
    run_local = execution.scheduled_for.astimezone(zone)
    context = template_context(report.name, run_local, execution.row_count or 0, report.timezone)
    artifacts = list(
        session.execute(
            sa.select(Artifact)
            .where(Artifact.execution_id == execution.id, Artifact.purged_at.is_(None))
            .order_by(Artifact.format)
        ).scalars()
    )

    def read(artifact: Artifact):
        return ctx.store.open(session, artifact)

    subject = render_subject(report.subject, context, test=execution.trigger == "test")
    plan = plan_files(artifacts, read, ctx.settings.max_attachment_bytes)
    now = ctx.clock.now()
    download_links = []
    for artifact in plan.too_large:
        expires = links.link_expiry(ctx.settings, now=now, artifact_expires_at=artifact.expires_at)
        token = links.sign(ctx.settings, artifact.id, expires_at=expires)
        url = links.url_for(ctx.settings, token)
        download_links.append(DownloadLink(artifact.filename, url, artifact.size, expires))
    preview = read_preview(artifacts, read, execution.row_count or 0)
    text, html = compose_body(
        report.body,
        context,
        subject=subject,
        preview=preview,
        attachments=tuple(plan.attachments),
        links=tuple(download_links),
    )
    return MailContent(subject, text, html, tuple(plan.attachments), tuple(download_links))


def _prepare(ctx: WorkerContext, exec_id: uuid.UUID) -> tuple[Outgoing | None, list[Delivery]]:
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
            return None, []
        report = session.get(ScheduledReport, execution.report_id)
        config = email_configs.effective(session, report.owner_id)
        smtp = email_configs.sending_settings(session, ctx.settings, ctx.secrets, config)
        content = _content(ctx, session, execution, report)
        mail = PreparedMail(content, sender=config.from_address, sender_name=config.from_name, reply_to=config.reply_to)
    return Outgoing(smtp, config, mail), pending


def deliver_execution(ctx: WorkerContext, transport: Transport, execution_id: str) -> None:
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
            _send_pending(ctx, transport, exec_id, lease, worker)
    finally:
        try:
            with transaction(ctx.session_factory) as session:
                executions.release(session, exec_id, worker=worker)
        except Exception as exc:  # the lease then simply runs out
            if not is_database_outage(exc):
                raise


def _send_pending(ctx: WorkerContext, transport: Transport, exec_id: uuid.UUID, lease, worker: str) -> None:
    extra = {"execution_id": str(exec_id)}
    try:
        outgoing, pending = _prepare(ctx, exec_id)
    except PermanentError as exc:
        _close(ctx, exec_id, failure=exc.message)
        return
    if outgoing is None:
        _close(ctx, exec_id)
        return
    try:
        smtp_session = transport.open(outgoing.smtp)
    except SmtpFailure as exc:
        _session_failed(ctx, exec_id, pending, exc, extra)
        return
    transient_left = False
    try:
        for index, delivery in enumerate(pending):
            if lease.lost:
                log.warning("lease lost; another worker resumes the run", extra=extra)
                return
            message_id = message_id_for(delivery.id, outgoing.config.from_address)
            raw = outgoing.mail.for_recipient(
                delivery.recipient, kind=delivery.kind, now=ctx.clock.now(), message_id=message_id
            )
            try:
                reply = smtp_session.send(raw, outgoing.config.from_address, delivery.recipient)
            except SendRefused as exc:
                _record(ctx, delivery.id, "failed" if exc.permanent else "pending", error=str(exc))
                transient_left = transient_left or not exc.permanent
                DELIVERIES.labels("refused" if exc.permanent else "deferred").inc()
                continue
            except SmtpFailure as exc:
                _session_failed(ctx, exec_id, pending[index:], exc, extra)
                return
            # The server has the copy: that fact must reach the ledger, however long the database is away.
            _record_accepted(ctx, delivery.id, reply=reply, message_id=message_id, extra=extra)
            DELIVERIES.labels("sent").inc()
    finally:
        smtp_session.close()
    if transient_left:
        _retry_or_close(ctx, exec_id, extra)
    else:
        _close(ctx, exec_id)


def _record(ctx, delivery_id, status, *, error=None, reply=None, message_id=None) -> None:
    with transaction(ctx.session_factory) as session:
        executions.record_delivery(
            session, delivery_id, status, now=ctx.clock.now(), error=error, reply=reply, message_id=message_id
        )


def _record_accepted(ctx, delivery_id, *, reply: str, message_id: str, extra: dict) -> None:
    """The server has the copy: that fact must reach the ledger, however long the database is away."""
    executions.record_accepted(
        lambda: _record(ctx, delivery_id, "sent", reply=reply, message_id=message_id),
        patience_s=RECORD_PATIENCE_S,
        extra=extra,
        sleep=time.sleep,
    )


def _session_failed(ctx, exec_id, pending: list[Delivery], failure: SmtpFailure, extra: dict) -> None:
    DELIVERIES.labels("failed" if failure.permanent else "deferred").inc(len(pending))
    if failure.permanent:
        _close(ctx, exec_id, failure=failure.message)
        return
    with transaction(ctx.session_factory) as session:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_([d.id for d in pending]), Delivery.status == "pending")
            .values(attempts=Delivery.attempts + 1, error=failure.message)
            .execution_options(synchronize_session=False)
        )
    log.warning("SMTP session failed (%s): %s", failure.reason, failure.message, extra=extra)
    _retry_or_close(ctx, exec_id, extra)


def _retry_or_close(ctx: WorkerContext, exec_id: uuid.UUID, extra: dict) -> None:
    """Retry the recipients not yet reached while the run is inside its retry window, else close it."""
    with transaction(ctx.session_factory) as session:
        started = session.execute(
            sa.select(ReportExecution.sending_at).where(ReportExecution.id == exec_id)
        ).scalar_one_or_none()
    window = timedelta(seconds=ctx.settings.mail_retry_window_s)
    if started is None or ctx.clock.now() - started >= window:
        log.warning("delivery gave up: the retry window (BIAPP_MAIL_RETRY_WINDOW_S) is over", extra=extra)
        _close(ctx, exec_id)
        return
    log.warning("delivery will retry for recipients not yet reached", extra=extra)
    raise RetryDelivery(str(exec_id))


def _close(ctx: WorkerContext, exec_id: uuid.UUID, failure: str | None = None) -> None:
    with transaction(ctx.session_factory) as session:
        executions.close_from_ledger(session, exec_id, now=ctx.clock.now(), failure=failure)
