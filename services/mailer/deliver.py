"""Deliver one execution: the ledger, not the broker, decides who still needs a copy.

Each (execution, recipient) has a Delivery row. A run sends only to rows still
`pending`, marks each `sent` right after the server accepts it, and leaves
transient failures `pending` for the next retry. A lease on the execution keeps
two workers from sending the same run at once.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.mailer.compose import (
    DEFAULT_BODY,
    Attachment,
    MailContent,
    build_message,
    render_subject,
    render_template,
    template_context,
)
from services.mailer.transport import SendRefused, SmtpSettings, Transport
from shared import email_configs, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import PermanentError, SmtpConfigurationError
from shared.metrics import DELIVERIES, EXECUTIONS
from shared.models import Artifact, Delivery, ReportExecution, ScheduledReport

log = logging.getLogger(__name__)


class RetryDelivery(Exception):
    """Some recipients hit a transient failure; Dramatiq retries the message with backoff."""


def _insert_deliveries(session, execution: ReportExecution) -> None:
    existing = set(
        session.execute(sa.select(Delivery.recipient).where(Delivery.execution_id == execution.id)).scalars()
    )
    for planned in execution.recipients:
        if planned["address"] not in existing:
            session.add(Delivery(execution_id=execution.id, recipient=planned["address"], kind=planned["kind"]))


def _claim(ctx: WorkerContext, execution_id: uuid.UUID) -> bool:
    """rendered -> sending (first time) and take the lease; False if another worker has it."""
    now = ctx.clock.now()
    lease_until = now + timedelta(seconds=ctx.settings.mail_time_limit_s + 60)
    with transaction(ctx.session_factory) as session:
        executions.move(session, execution_id, expected="rendered", target="sending", now=now)
        taken = session.execute(
            sa.update(ReportExecution)
            .where(
                ReportExecution.id == execution_id,
                ReportExecution.status == "sending",
                sa.or_(ReportExecution.lease_expires_at.is_(None), ReportExecution.lease_expires_at < now),
            )
            .values(lease_owner=ctx.worker_id, lease_expires_at=lease_until)
        ).rowcount
        if taken:
            execution = session.get(ReportExecution, execution_id)
            _insert_deliveries(session, execution)
    return bool(taken)


def _release(ctx: WorkerContext, execution_id: uuid.UUID) -> None:
    with transaction(ctx.session_factory) as session:
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == execution_id, ReportExecution.lease_owner == ctx.worker_id)
            .values(lease_owner=None, lease_expires_at=None)
        )


def _smtp_settings(ctx: WorkerContext, session, report: ScheduledReport) -> tuple[SmtpSettings, object]:
    config = email_configs.effective(session, report.owner_id)
    allowed = ctx.settings.smtp_allowed_hosts
    if allowed and config.host.lower() not in allowed:
        raise SmtpConfigurationError(f"SMTP host {config.host!r} is not in BIAPP_SMTP_ALLOWED_HOSTS.")
    password = (
        ctx.secrets.decrypt(config.password_encrypted, what="SMTP password") if config.password_encrypted else None
    )
    settings = SmtpSettings(
        host=config.host,
        port=config.port,
        security=config.security,
        username=config.username,
        password=password,
        timeout_s=ctx.settings.smtp_timeout_s,
    )
    return settings, config


def _content(ctx: WorkerContext, session, execution: ReportExecution, report: ScheduledReport) -> MailContent:
    zone = ZoneInfo(report.timezone or "UTC")
    run_local = execution.scheduled_for.astimezone(zone)
    context = template_context(report.name, run_local, execution.row_count or 0, report.timezone)
    attachments = []
    for artifact in session.execute(
        sa.select(Artifact).where(Artifact.execution_id == execution.id).order_by(Artifact.format)
    ).scalars():
        data = b"".join(ctx.store.open(session, artifact))
        attachments.append(Attachment(artifact.filename, artifact.content_type, data))
    text = render_template(report.body or DEFAULT_BODY, context, field="body")
    return MailContent(
        subject=render_subject(report.subject, context, test=execution.trigger == "test"),
        text=text,
        html=None,
        attachments=tuple(attachments),
    )


def deliver_execution(ctx: WorkerContext, transport: Transport, execution_id: str) -> None:
    exec_id = uuid.UUID(execution_id)
    if not _claim(ctx, exec_id):
        log.info("deliver skipped: not ours to send", extra={"execution_id": execution_id})
        return
    try:
        _send_pending(ctx, transport, exec_id)
    finally:
        _release(ctx, exec_id)


def _send_pending(ctx: WorkerContext, transport: Transport, exec_id: uuid.UUID) -> None:
    extra = {"execution_id": str(exec_id)}
    with transaction(ctx.session_factory) as session:
        execution = session.get(ReportExecution, exec_id)
        report = session.get(ScheduledReport, execution.report_id)
        extra["report_id"] = str(report.id)
        try:
            smtp, config = _smtp_settings(ctx, session, report)
            content = _content(ctx, session, execution, report)
        except PermanentError as exc:
            _finish(ctx, session, execution, failure=exc.message)
            return
        pending = (
            session.execute(sa.select(Delivery).where(Delivery.execution_id == exec_id, Delivery.status == "pending"))
            .scalars()
            .all()
        )
    transient_left = False
    try:
        mail = transport.open(smtp)
    except smtplib.SMTPAuthenticationError as exc:
        with transaction(ctx.session_factory) as session:
            execution = session.get(ReportExecution, exec_id)
            _finish(ctx, session, execution, failure=f"SMTP authentication failed: {exc.smtp_code}")
        return
    except (TimeoutError, OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        _record_transient_all(ctx, pending, f"cannot connect to SMTP server: {type(exc).__name__}: {exc}")
        _maybe_retry(ctx, exec_id, extra)
        return
    try:
        for delivery in pending:
            message = build_message(
                content,
                sender=config.from_address,
                sender_name=config.from_name,
                recipient=delivery.recipient,
                reply_to=config.reply_to,
                now=ctx.clock.now(),
            )
            try:
                reply = mail.send(message, config.from_address, delivery.recipient)
            except SendRefused as exc:
                _record(ctx, delivery.id, "failed" if exc.permanent else "pending", error=str(exc))
                transient_left = transient_left or not exc.permanent
                DELIVERIES.labels("refused" if exc.permanent else "deferred").inc()
                continue
            except (OSError, smtplib.SMTPException) as exc:
                _record(ctx, delivery.id, "pending", error=f"{type(exc).__name__}: {exc}")
                transient_left = True
                DELIVERIES.labels("deferred").inc()
                break
            _record(ctx, delivery.id, "sent", reply=reply, message_id=message["Message-ID"])
            DELIVERIES.labels("sent").inc()
    finally:
        mail.close()
    if transient_left:
        _maybe_retry(ctx, exec_id, extra)
    else:
        with transaction(ctx.session_factory) as session:
            _finish(ctx, session, session.get(ReportExecution, exec_id))


def _record(ctx, delivery_id, status, *, error=None, reply=None, message_id=None) -> None:
    values: dict = {"status": status, "attempts": Delivery.attempts + 1, "error": error}
    if status == "sent":
        values.update(sent_at=ctx.clock.now(), smtp_reply=reply, message_id=message_id, error=None)
    with transaction(ctx.session_factory) as session:
        session.execute(sa.update(Delivery).where(Delivery.id == delivery_id).values(**values))


def _record_transient_all(ctx, pending, error: str) -> None:
    for delivery in pending:
        _record(ctx, delivery.id, "pending", error=error)


def _maybe_retry(ctx: WorkerContext, exec_id: uuid.UUID, extra: dict) -> None:
    with transaction(ctx.session_factory) as session:
        execution = session.get(ReportExecution, exec_id)
        worst = session.execute(
            sa.select(sa.func.max(Delivery.attempts)).where(
                Delivery.execution_id == exec_id, Delivery.status == "pending"
            )
        ).scalar_one()
        if (worst or 0) > ctx.settings.mail_max_retries:
            _finish(ctx, session, execution)
            return
    log.warning("delivery will retry for recipients not yet reached", extra=extra)
    raise RetryDelivery(str(exec_id))


def _finish(ctx: WorkerContext, session, execution: ReportExecution, failure: str | None = None) -> None:
    """Close the run: pending rows fail, then success / partial / failed from the ledger."""
    now = ctx.clock.now()
    if failure:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.execution_id == execution.id, Delivery.status == "pending")
            .values(status="failed", error=failure)
        )
    else:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.execution_id == execution.id, Delivery.status == "pending")
            .values(status="failed", error=sa.func.coalesce(Delivery.error, "not delivered"))
        )
    session.flush()
    rows = session.execute(sa.select(Delivery).where(Delivery.execution_id == execution.id)).scalars().all()
    sent = [d for d in rows if d.status == "sent"]
    failed = [d for d in rows if d.status == "failed"]
    if rows and not failed:
        target, error = "success", None
    elif sent:
        target = "partial"
        error = "; ".join(f"{d.recipient}: {d.error}" for d in failed)
    else:
        target = "failed"
        error = failure or "; ".join(f"{d.recipient}: {d.error}" for d in failed) or "no recipients"
    if executions.move(session, execution.id, expected="sending", target=target, now=now, error=error):
        EXECUTIONS.labels(target, execution.trigger).inc()
