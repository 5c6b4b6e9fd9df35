"""Render one execution: query once, fan rows out to every writer, store the files.

The run is claimed under a lease (shared/executions/leases.py) renewed by a heartbeat
while the queries stream into temporary files; no application-database connection is
held meanwhile. The files and the move to `rendered` then commit together in one short
transaction, only while the lease is still ours, so a crash leaves either a `running`
run with no artifacts (taken over as soon as its lease runs out) or a `rendered` one
with all of them.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.renderer import lanes
from services.renderer.changes import RowsDigest, unchanged_reason
from services.renderer.summary import ChartPlan, SummaryCollector
from services.renderer.writers import RenderedFile, RenderMeta, Section, Writer
from services.renderer.writers.csv_writer import CsvWriter
from services.renderer.writers.pdf_writer import PdfWriter
from services.renderer.writers.xlsx_writer import XlsxWriter
from shared import access, executions, filter_words, unsubscribe
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import NotFoundError, PermanentError, RenderFailedError, TransientError
from shared.messaging import DELIVER_REPORT, RENDER_HEAVY_REPORT, RENDER_REPORT, publish_after_commit
from shared.metrics import EXECUTIONS, RENDER_ROWS, RENDER_SECONDS, SCHEDULER_LAG
from shared.models import Artifact, Dashboard, ReportExecution, SavedQuery, ScheduledReport, SemanticEntity
from shared.outages import is_database_outage
from shared.query.engine import Prepared, prepare, stream_prepared
from shared.text import slugify, strip_bidi_controls

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised to let Dramatiq retry a transient failure (the run went back to queued)."""


def build_writers(
    formats: list[str], workdir: Path, report: ScheduledReport, *, pdf_max_rows: int = 1000
) -> list[Writer]:
    zone = report.timezone or "UTC"
    locale = getattr(report, "locale", None) or "en-US"
    writers: list[Writer] = []
    for fmt in dict.fromkeys(formats):  # each format once, in the report's order
        if fmt == "csv":
            separator = report.csv_separator or ","
            writers.append(CsvWriter(workdir, bom=bool(report.csv_bom), timezone=zone, separator=separator))
        elif fmt == "xlsx":
            writers.append(XlsxWriter(workdir, timezone=zone, cover=True, locale=locale))
        elif fmt == "pdf":
            full = tuple(f for f in ("xlsx", "csv") if f in formats)
            writers.append(PdfWriter(workdir, timezone=zone, max_rows=pdf_max_rows, full_data_in=full, locale=locale))
        else:
            raise RenderFailedError(f"format {fmt!r} is not available")
    if not writers:
        raise RenderFailedError("The report has no output formats.")
    return writers


def base_filename(report_name: str, run_local: datetime) -> str:
    """The stem of every artifact's file name: ASCII, and never a bidi control (they disguise extensions)."""
    return strip_bidi_controls(f"{slugify(report_name) or 'report'}_{run_local:%Y-%m-%d_%H%M}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def describe_filters(session, query: SavedQuery, locale: str = "en-US") -> tuple[str, ...]:
    """A semantic query's filters as people read them, in the report's language: `Order date: last 90 days`."""
    filters = ((query.definition or {}).get("filters") or []) if query.kind == "semantic" else []
    filters = [f for f in filters if isinstance(f, dict)]
    if not filters:
        return ()
    entity = session.get(SemanticEntity, query.entity_id) if query.entity_id else None
    labels = {}
    for item in [*(entity.dimensions or []), *(entity.measures or [])] if entity else []:
        if isinstance(item, dict) and item.get("name") and item.get("label"):
            labels[item["name"]] = item["label"]
    return filter_words.describe_filters(filters, entity_fields=labels, locale=locale)


def _sections(session, report: ScheduledReport) -> list[tuple[str, SavedQuery, ChartPlan]]:
    """(title, query, chart plan) for the report's query, or for each widget of its dashboard in order."""
    if report.saved_query_id:
        query = session.get(SavedQuery, report.saved_query_id)
        if query is None:
            raise NotFoundError("The report's saved query no longer exists.")
        access.check_report_sources(session, report.owner_id, query=query)
        return [(report.name, query, ChartPlan())]
    dashboard = session.get(Dashboard, report.dashboard_id)
    if dashboard is None:
        raise NotFoundError("The report's dashboard no longer exists.")
    access.check_report_sources(session, report.owner_id, dashboard=dashboard)
    sections = []
    for widget in sorted(dashboard.widgets, key=lambda w: w.position):
        query = session.get(SavedQuery, widget.saved_query_id)
        if query is None:
            raise NotFoundError(f"The saved query of widget {widget.title!r} no longer exists.")
        plan = ChartPlan(widget.chart, widget.x_field, widget.series_field, tuple(widget.measures or ()))
        sections.append((widget.title, query, plan))
    return sections


def _failed(writer: Writer, exc: Exception) -> RenderFailedError:
    log.exception("%s writer failed", writer.format)
    return RenderFailedError(f"Writing the {writer.format.upper()} file failed ({type(exc).__name__}).")


@dataclass(frozen=True)
class Job:
    """What one render needs, read from the application database in one short transaction."""

    report: ScheduledReport
    sections: list[tuple[str, Prepared, ChartPlan, tuple[str, ...]]]  # title, prepared query, chart, filters
    previous_summary: dict | None = None  # the report's last run's, for KPI changes


def load_job(ctx: WorkerContext, execution: ReportExecution, now: datetime) -> Job:
    """Check access and plan every section's query; the session closes before any query runs."""
    with ctx.session_factory() as session:
        report = session.get(ScheduledReport, execution.report_id)
        if report is None:
            raise NotFoundError("The report was deleted.")
        if execution.trigger == "schedule" and not report.is_active:
            raise RunCancelled("The report was paused before this run started.")
        if not execution.recipients and execution.trigger != "test" and unsubscribe.everyone_left(session, report):
            raise RunCancelled("Every recipient unsubscribed from this report: nobody is left to send it to.")
        sections = [
            (
                title,
                prepare(session, query, engines=ctx.engines, timezone=report.timezone, now=now),
                plan,
                describe_filters(session, query, report.locale or "en-US"),
            )
            for title, query, plan in _sections(session, report)
        ]
        previous = (
            _previous_summary(session, report, execution) if any(p.kind == "kpi" for _, _, p, _ in sections) else None
        )
        session.expunge_all()
    return Job(report, sections, previous)


def _previous_summary(session, report: ScheduledReport, execution: ReportExecution) -> dict | None:
    """The summary of the report's last delivered run before this one (not a test run)."""
    return session.execute(
        sa.select(ReportExecution.summary)
        .where(
            ReportExecution.report_id == report.id,
            ReportExecution.id != execution.id,
            ReportExecution.status.in_(("success", "partial")),
            ReportExecution.trigger != "test",
            ReportExecution.summary.is_not(None),
        )
        .order_by(ReportExecution.scheduled_for.desc())
        .limit(1)
    ).scalar_one_or_none()


def write_files(ctx: WorkerContext, job: Job, workdir: Path, digest: RowsDigest | None = None):
    """One pass over each section's rows, fanned out to every writer (and the rows' `digest`); no application
    connection is held.

    Any writer failing fails the whole render: an incomplete set is never sent.
    """
    report = job.report
    digest = digest or RowsDigest()
    writers = build_writers(report.formats, workdir, report, pdf_max_rows=ctx.settings.pdf_max_rows)
    summary = SummaryCollector(
        locale=report.locale or "en-US", timezone=report.timezone or "UTC", previous=job.previous_summary
    )
    total_rows = 0
    truncated = False
    try:
        for title, prepared, plan, filters in job.sections:
            with stream_prepared(prepared, settings=ctx.settings) as stream:
                section = Section(
                    title,
                    list(stream.columns),
                    chart=plan.kind,
                    filters=filters,
                    plan=plan,
                    previous_kpi=summary.previous_kpis.get(title),
                )
                for writer in writers:
                    writer.begin_section(section)
                summary.begin_section(title, section.columns, plan, filters)
                digest.begin_section(section.columns)
                add_to_digest = digest.row_adder()
                collect = summary.write_row
                for row in stream:
                    add_to_digest(row)
                    collect(row)
                    for writer in writers:
                        try:
                            writer.write_row(row)
                        except Exception as exc:
                            raise _failed(writer, exc) from exc
                for writer in writers:
                    writer.end_section(stream.row_count, stream.truncated)
                summary.end_section(stream.row_count, stream.truncated)
                total_rows += stream.row_count
                truncated = truncated or stream.truncated
    except BaseException:
        discard_all(writers)
        raise
    return writers, total_rows, truncated, summary


def discard_all(writers: list[Writer]) -> None:
    for writer in writers:
        try:
            writer.discard()
        except Exception:
            log.warning("could not release the %s writer's files", writer.format, exc_info=True)


def finish_all(writers: list[Writer], meta: RenderMeta, base_name: str) -> list[RenderedFile]:
    files = []
    try:
        for writer in writers:
            try:
                files.append(writer.finish(meta, base_name))
            except Exception as exc:
                raise _failed(writer, exc) from exc
    except BaseException:
        discard_all(writers)
        raise
    return files


def render_execution(ctx: WorkerContext, execution_id: str, *, lane: str = lanes.LIGHT) -> None:
    """Claim the run (or wait for it), render it under a lease, store the files, hand it to the mailer.

    On the main queue, a run of a report that recently rendered slowly goes to the heavy queue instead
    (services/renderer/lanes.py).
    """
    exec_id = uuid.UUID(execution_id)
    extra = {"execution_id": execution_id}
    if lane == lanes.LIGHT and lanes.forward_if_heavy(ctx, exec_id):
        return
    worker = executions.new_token(ctx.worker_id)
    with transaction(ctx.session_factory) as session:
        claim = executions.claim_render(
            session, exec_id, worker=worker, now=ctx.clock.now(), ttl_s=ctx.settings.lease_ttl_s
        )
    if claim.outcome in ("busy", "early"):
        # Another worker holds the run (it may have died: its lease runs out), or it is not due yet.
        again = RENDER_HEAVY_REPORT if lane == lanes.HEAVY else RENDER_REPORT
        publish_after_commit(ctx.publisher, again, execution_id, delay_ms=int((claim.wait_s + 1) * 1000))
        log.info("render postponed (%s) by %.0f s", claim.outcome, claim.wait_s, extra=extra)
        return
    if claim.outcome == "done":
        state = claim.execution.status if claim.execution else "missing"
        log.info("render skipped: execution is %s", state, extra=extra)
        return
    execution = claim.execution
    extra["report_id"] = str(execution.report_id)
    if execution.trigger == "schedule" and execution.attempts == 1:
        SCHEDULER_LAG.observe(max(0.0, (ctx.clock.now() - execution.scheduled_for).total_seconds()))
    started = time.monotonic()
    try:
        lease = executions.LeaseKeeper(
            ctx.session_factory, exec_id, worker=worker, clock=ctx.clock, ttl_s=ctx.settings.lease_ttl_s
        )
        with lease, tempfile.TemporaryDirectory(prefix="biapp-render-") as tmp:
            outcome = _render_and_store(ctx, execution, Path(tmp), worker)
    except TransientError as exc:
        _handle_transient(ctx, execution, exc, worker, extra)
        return
    except PermanentError as exc:
        _fail(ctx, exec_id, exc.message, extra)
        return
    except LeaseLost:
        log.warning("render abandoned: another worker took the run over", extra=extra)
        return
    except RunCancelled as cancelled:
        _skip(ctx, exec_id, worker, str(cancelled), extra)
        return
    except Exception as exc:
        if is_database_outage(exc):
            _handle_transient(ctx, execution, exc, worker, extra)
            return
        log.exception("render crashed", extra=extra)
        _fail(ctx, exec_id, f"Internal error while rendering ({type(exc).__name__}); see the renderer logs.", extra)
        return
    RENDER_SECONDS.observe(time.monotonic() - started)
    if outcome == "rendered":
        log.info("rendered", extra=extra)
        publish_after_commit(ctx.publisher, DELIVER_REPORT, execution_id)
    elif outcome == "skipped":
        EXECUTIONS.labels("skipped", execution.trigger).inc()


class RunCancelled(Exception):
    """Nobody wants this run any more (its report was paused): it ends `skipped` with the reason."""


class LeaseLost(Exception):
    """Our lease was taken over (we stopped renewing long enough): the other worker's result counts."""


def _render_and_store(ctx: WorkerContext, execution: ReportExecution, workdir: Path, worker: str) -> str:
    """Render to temporary files with no application connection held, then store them in one short transaction."""
    now = ctx.clock.now()
    job = load_job(ctx, execution, now)
    report = job.report
    zone = ZoneInfo(report.timezone or "UTC")
    run_local = execution.scheduled_for.astimezone(zone)
    digest = RowsDigest()
    writers, row_count, truncated, summary = write_files(ctx, job, workdir, digest)
    RENDER_ROWS.observe(row_count)
    rows_hash = digest.hexdigest()
    reason = _nothing_to_send(ctx, report, execution, row_count, rows_hash)
    if reason is not None:
        discard_all(writers)
        with transaction(ctx.session_factory) as session:
            if not executions.move(
                session,
                execution.id,
                expected="running",
                target="skipped",
                now=ctx.clock.now(),
                owner=worker,
                row_count=row_count,
                truncated=truncated,
                rows_hash=rows_hash,
                error=reason,
            ):
                raise LeaseLost()
        log.info("skipped: %s", reason, extra={"execution_id": str(execution.id), "report_id": str(report.id)})
        return "skipped"
    meta = RenderMeta(
        report_name=report.name,
        run_time_local=f"{run_local:%Y-%m-%d %H:%M} {run_local.tzname()}",
        timezone=report.timezone,
        description=report.description,
        max_report_rows=ctx.settings.max_report_rows,
    )
    files: list[RenderedFile] = finish_all(writers, meta, base_filename(report.name, run_local))
    _store(ctx, execution, files, row_count, truncated, worker, rows_hash=rows_hash, summary=summary.summary())
    return "rendered"


def _nothing_to_send(
    ctx: WorkerContext, report: ScheduledReport, execution: ReportExecution, row_count: int, rows_hash: str
) -> str | None:
    """Why a rendered run ends `skipped`: no rows while send_if_empty is off, or the same rows as the last run
    its recipients got while send_only_if_changed is on. None: send it."""
    if row_count == 0 and not report.send_if_empty:
        return "The query returned no rows and the report does not send empty results."
    with ctx.session_factory() as session:  # connects only if the report asks for the comparison
        return unchanged_reason(session, report, execution, rows_hash)


def _store(
    ctx: WorkerContext,
    execution: ReportExecution,
    files,
    row_count: int,
    truncated: bool,
    worker: str,
    *,
    rows_hash: str | None = None,
    summary: dict | None = None,
):
    """Files and the move to `rendered` commit together, only while the lease is ours.

    Leftovers of an earlier, interrupted attempt go in the same transaction; their files outside
    the database are removed once it has committed. A crash leaves either a `running` run with no
    artifacts or a `rendered` one with all of them.
    """
    now = ctx.clock.now()
    saved: list[Artifact] = []
    replaced: list[Artifact] = []
    try:
        with transaction(ctx.session_factory) as session:
            for old in session.execute(sa.select(Artifact).where(Artifact.execution_id == execution.id)).scalars():
                if old.storage == "database":
                    ctx.store.delete(session, old)
                replaced.append(old)
                session.delete(old)
            for rendered in files:
                artifact = Artifact(
                    id=uuid.uuid4(),
                    execution_id=execution.id,
                    format=rendered.format,
                    filename=rendered.filename,
                    content_type=rendered.content_type,
                    size=rendered.path.stat().st_size,
                    sha256=_sha256(rendered.path),
                    storage=ctx.store.name,
                    expires_at=now + timedelta(days=ctx.settings.artifact_retention_days),
                )
                session.add(artifact)
                with open(rendered.path, "rb") as handle:
                    ctx.store.save(session, artifact, handle)
                saved.append(artifact)
            moved = _leave_running(
                ctx,
                session,
                execution.id,
                worker,
                "rendered",
                row_count=row_count,
                truncated=truncated,
                rows_hash=rows_hash,
                summary=summary,
            )
            if not moved:
                session.rollback()
                raise LeaseLost()
    except BaseException:
        for artifact in saved:
            ctx.store.discard(artifact)
        raise
    for old in replaced:  # committed: the earlier attempt's files can go
        ctx.store.discard(old)


def _leave_running(ctx: WorkerContext, session, execution_id: uuid.UUID, worker: str, target: str, **fields) -> bool:
    """Move our `running` run on (to rendered, skipped, queued or failed), only while the lease is ours."""
    return executions.move(
        session, execution_id, expected="running", target=target, now=ctx.clock.now(), owner=worker, **fields
    )


def _handle_transient(ctx: WorkerContext, execution: ReportExecution, exc: Exception, worker: str, extra: dict):
    """Hand the run back for a retry with backoff, or fail it once the attempts are used up.

    While the application database itself is down this cannot be written: the lease then simply
    runs out and the sweeper (or the retried message) takes the run over when it is back.
    """
    message = getattr(exc, "message", None) or "The application database was unreachable."
    gave_up = notices = False
    try:
        with transaction(ctx.session_factory) as session:
            current = session.get(ReportExecution, execution.id)
            attempts = current.attempts if current else 0
            if attempts > ctx.settings.render_max_retries:
                gave_up = True
                final = f"{message} (gave up after {attempts} attempts)"
                if _leave_running(ctx, session, execution.id, worker, "failed", error=final):
                    EXECUTIONS.labels("failed", execution.trigger).inc()
                    notices = executions.insert_failure_notices(session, execution.id)
            else:
                _leave_running(ctx, session, execution.id, worker, "queued", error=message)
    except Exception as write_error:
        if not is_database_outage(write_error):
            raise
        log.warning("database unreachable; the run is retried when it is back", extra=extra)
    if gave_up:
        if notices:  # its webhook and chat destinations hear that no numbers are coming
            publish_after_commit(ctx.publisher, DELIVER_REPORT, str(execution.id))
        log.warning("render failed for good: %s", message, extra=extra)
        return
    log.warning("render will retry: %s", message, extra=extra)
    raise RetryLater(message)


def _skip(ctx: WorkerContext, execution_id: uuid.UUID, worker: str, reason: str, extra: dict) -> None:
    with transaction(ctx.session_factory) as session:
        executions.move(
            session,
            execution_id,
            expected="running",
            target="skipped",
            now=ctx.clock.now(),
            owner=worker,
            error=reason,
        )
    log.info("skipped: %s", reason, extra=extra)


def _fail(ctx: WorkerContext, execution_id: uuid.UUID, message: str, extra: dict) -> None:
    with transaction(ctx.session_factory) as session:
        execution = session.get(ReportExecution, execution_id)
        failed, notices = executions.fail_and_notify(session, execution_id, now=ctx.clock.now(), error=message)
        if failed:
            EXECUTIONS.labels("failed", execution.trigger).inc()
    if notices:  # its webhook and chat destinations hear that no numbers are coming
        publish_after_commit(ctx.publisher, DELIVER_REPORT, str(execution_id))
    log.warning("render failed: %s", message, extra=extra)
