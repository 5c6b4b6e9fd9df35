"""Deliver one execution: the ledger, not the broker, decides who still needs a copy.

Each (execution, recipient) has a Delivery row. A run sends only to rows still
`pending`, over one SMTP session, and marks each `sent` in its own commit right
after the server accepted it. Transient failures (connection, timeout, 4xx) leave
the row `pending` for a retry with backoff; permanent ones (5xx for a recipient)
mark it `failed`; authentication, TLS and a refused sender fail every row at once.

A lease on the execution keeps two workers from sending the same run at once; it
is renewed with every recorded recipient, so a worker that died loses it within
`lease_seconds()`. A message that finds the lease held elsewhere re-publishes
itself for when the lease ends instead of being lost.

Crash semantics: a worker killed between the server's `250` and the ledger
commit leaves that one recipient `pending`, so it gets a second copy when the
run resumes — at most one message per crash, carrying the same Message-ID as the
first (mail clients that de-duplicate by Message-ID show it once). Every other
recipient gets exactly one copy.
"""

from __future__ import annotations

import logging
import threading
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
from shared.metrics import DELIVERIES, EXECUTIONS
from shared.models import Artifact, Delivery, EmailConfig, ReportExecution, ScheduledReport
from shared.templates import template_context

log = logging.getLogger(__name__)


class RetryDelivery(Exception):
    """Some recipients hit a transient failure; Dramatiq retries the message with backoff."""


@dataclass(frozen=True)
class Outgoing:
    smtp: SmtpSettings
    config: EmailConfig
    mail: PreparedMail


def lease_seconds(ctx: WorkerContext) -> int:
    # A live worker renews every third of this; a dead one's lease runs out this long after its last renewal.
    return max(10, ctx.settings.smtp_timeout_s)


class LeaseKeeper:
    """Renews the lease from a background thread while this process is alive, so a slow send
    never loses it and a killed worker's run can be resumed within `lease_seconds()`."""

    def __init__(self, ctx: WorkerContext, execution_id: uuid.UUID):
        self.ctx = ctx
        self.execution_id = execution_id
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{execution_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = lease_seconds(self.ctx) / 3
        while not self._stop.wait(interval):
            try:
                with transaction(self.ctx.session_factory) as session:
                    if not _renew(session, self.ctx, self.execution_id):
                        self.lost = True
                        return
            except Exception:  # a database blip: the next beat tries again
                log.warning("could not renew the delivery lease", exc_info=True)


def _insert_deliveries(session, execution: ReportExecution) -> None:
    existing = set(
        session.execute(sa.select(Delivery.recipient).where(Delivery.execution_id == execution.id)).scalars()
    )
    for planned in execution.recipients:
        if planned["address"] not in existing:
            session.add(Delivery(execution_id=execution.id, recipient=planned["address"], kind=planned["kind"]))


def _claim(ctx: WorkerContext, execution_id: uuid.UUID) -> tuple[str, float]:
    """rendered -> sending (first time) and take the lease: ('ours'|'busy'|'done', seconds the lease has left)."""
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        executions.move(session, execution_id, expected="rendered", target="sending", now=now)
        taken = session.execute(
            sa.update(ReportExecution)
            .where(
                ReportExecution.id == execution_id,
                ReportExecution.status == "sending",
                sa.or_(
                    ReportExecution.lease_expires_at.is_(None),
                    ReportExecution.lease_expires_at < now,
                    ReportExecution.lease_owner == ctx.worker_id,
                ),
            )
            .values(lease_owner=ctx.worker_id, lease_expires_at=now + timedelta(seconds=lease_seconds(ctx)))
            .execution_options(synchronize_session=False)
        ).rowcount
        execution = session.get(ReportExecution, execution_id)
        if taken:
            _insert_deliveries(session, execution)
            return "ours", 0.0
        if execution is not None and execution.status == "sending":
            return "busy", max(0.0, (execution.lease_expires_at - now).total_seconds())
        return "done", 0.0


def _renew(session, ctx: WorkerContext, execution_id: uuid.UUID) -> bool:
    return bool(
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == execution_id, ReportExecution.lease_owner == ctx.worker_id)
            .values(lease_expires_at=ctx.clock.now() + timedelta(seconds=lease_seconds(ctx)))
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def _release(ctx: WorkerContext, execution_id: uuid.UUID) -> None:
    with transaction(ctx.session_factory) as session:
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == execution_id, ReportExecution.lease_owner == ctx.worker_id)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


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
        _renew(session, ctx, exec_id)
    return Outgoing(smtp, config, mail), pending


def deliver_execution(ctx: WorkerContext, transport: Transport, execution_id: str) -> None:
    exec_id = uuid.UUID(execution_id)
    claim, lease_left = _claim(ctx, exec_id)
    if claim == "busy":
        # Another worker holds the lease (or died holding it): look again when it runs out.
        ctx.publisher.send("deliver_report", execution_id, delay_ms=int((lease_left + 1) * 1000))
        log.info("deliver postponed: another worker holds the run", extra={"execution_id": execution_id})
        return
    if claim == "done":
        log.info("deliver skipped: nothing left to send", extra={"execution_id": execution_id})
        return
    try:
        with LeaseKeeper(ctx, exec_id) as lease:
            _send_pending(ctx, transport, exec_id, lease)
    finally:
        _release(ctx, exec_id)


def _send_pending(ctx: WorkerContext, transport: Transport, exec_id: uuid.UUID, lease: LeaseKeeper) -> None:
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
                kept = _record(ctx, exec_id, delivery.id, "failed" if exc.permanent else "pending", error=str(exc))
                transient_left = transient_left or not exc.permanent
                DELIVERIES.labels("refused" if exc.permanent else "deferred").inc()
                if not kept:
                    return
                continue
            except SmtpFailure as exc:
                _session_failed(ctx, exec_id, pending[index:], exc, extra)
                return
            if not _record(ctx, exec_id, delivery.id, "sent", reply=reply, message_id=message_id):
                log.warning("lease lost mid-send; another worker resumes the run", extra=extra)
                return
            DELIVERIES.labels("sent").inc()
    finally:
        smtp_session.close()
    if transient_left:
        _retry_or_close(ctx, exec_id, extra)
    else:
        _close(ctx, exec_id)


def _record(ctx, exec_id, delivery_id, status, *, error=None, reply=None, message_id=None) -> bool:
    """Write one recipient's outcome and renew the lease; False if the lease is no longer ours."""
    values: dict = {"status": status, "attempts": Delivery.attempts + 1, "error": error}
    if status == "sent":
        values.update(sent_at=ctx.clock.now(), smtp_reply=reply, message_id=message_id, error=None)
    with transaction(ctx.session_factory) as session:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return _renew(session, ctx, exec_id)


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
    with transaction(ctx.session_factory) as session:
        worst = session.execute(
            sa.select(sa.func.max(Delivery.attempts)).where(
                Delivery.execution_id == exec_id, Delivery.status == "pending"
            )
        ).scalar_one()
    if (worst or 0) > ctx.settings.mail_max_retries:
        _close(ctx, exec_id)
        return
    log.warning("delivery will retry for recipients not yet reached", extra=extra)
    raise RetryDelivery(str(exec_id))


def _close(ctx: WorkerContext, exec_id: uuid.UUID, failure: str | None = None) -> None:
    with transaction(ctx.session_factory) as session:
        finish(ctx, session, exec_id, failure=failure)


def finish(ctx: WorkerContext, session, exec_id: uuid.UUID, failure: str | None = None) -> str | None:
    """Close the run: pending rows fail, then success / partial / failed from the ledger."""
    now = ctx.clock.now()
    session.execute(
        sa.update(Delivery)
        .where(Delivery.execution_id == exec_id, Delivery.status == "pending")
        .values(status="failed", error=failure or sa.func.coalesce(Delivery.error, "not delivered"))
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(sa.select(Delivery).where(Delivery.execution_id == exec_id)).scalars().all()
    sent = [d for d in rows if d.status == "sent"]
    failed = [d for d in rows if d.status == "failed"]
    if rows and not failed:
        target, error = "success", None
    elif sent:
        target = "partial"
        error = f"{len(failed)} of {len(rows)} recipients not reached: " + "; ".join(
            f"{d.recipient}: {d.error}" for d in failed
        )
    else:
        target = "failed"
        error = failure or "; ".join(f"{d.recipient}: {d.error}" for d in failed) or "no recipients"
    if not executions.move(session, exec_id, expected="sending", target=target, now=now, error=error):
        return None
    execution = session.get(ReportExecution, exec_id)
    EXECUTIONS.labels(target, execution.trigger).inc()
    log.info("delivery finished: %s", target, extra={"execution_id": str(exec_id), "recipient_count": len(sent)})
    return target
