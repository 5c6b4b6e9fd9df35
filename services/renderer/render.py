"""Render one execution: query once, fan rows out to every writer, store the files.

The files and the move to `rendered` commit together, so a crash leaves either a
`running` execution with no artifacts or a `rendered` one with all of them.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from services.renderer.writers import RenderedFile, RenderMeta, Section, Writer
from services.renderer.writers.csv_writer import CsvWriter
from services.renderer.writers.pdf_writer import PdfWriter
from services.renderer.writers.xlsx_writer import XlsxWriter
from shared import access, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import NotFoundError, PermanentError, RenderFailedError, TransientError
from shared.metrics import EXECUTIONS, RENDER_ROWS, RENDER_SECONDS, SCHEDULER_LAG
from shared.models import Artifact, Dashboard, ReportExecution, SavedQuery, ScheduledReport
from shared.query.engine import open_stream
from shared.text import slugify, strip_bidi_controls

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised to let Dramatiq retry a transient failure (the run went back to queued)."""


def build_writers(
    formats: list[str], workdir: Path, report: ScheduledReport, *, pdf_max_rows: int = 1000
) -> list[Writer]:
    zone = report.timezone or "UTC"
    writers: list[Writer] = []
    for fmt in dict.fromkeys(formats):  # each format once, in the report's order
        if fmt == "csv":
            writers.append(CsvWriter(workdir, bom=bool(report.csv_bom), timezone=zone))
        elif fmt == "xlsx":
            writers.append(XlsxWriter(workdir, timezone=zone, cover=report.dashboard_id is not None))
        elif fmt == "pdf":
            full = tuple(f for f in ("xlsx", "csv") if f in formats)
            writers.append(PdfWriter(workdir, timezone=zone, max_rows=pdf_max_rows, full_data_in=full))
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


def describe_filters(query: SavedQuery) -> tuple[str, ...]:
    """A semantic query's filters as people read them: `region ne APAC`."""
    filters = ((query.definition or {}).get("filters") or []) if query.kind == "semantic" else []
    return tuple(f"{f.get('field')} {f.get('op')} {f.get('value')}" for f in filters if isinstance(f, dict))


def _sections(session, report: ScheduledReport) -> list[tuple[str, SavedQuery, str]]:
    """(title, query, chart) for the report's query, or for each widget of its dashboard in order."""
    if report.saved_query_id:
        query = session.get(SavedQuery, report.saved_query_id)
        if query is None:
            raise NotFoundError("The report's saved query no longer exists.")
        access.check_report_sources(session, report.owner_id, query=query)
        return [(report.name, query, "table")]
    dashboard = session.get(Dashboard, report.dashboard_id)
    if dashboard is None:
        raise NotFoundError("The report's dashboard no longer exists.")
    access.check_report_sources(session, report.owner_id, dashboard=dashboard)
    sections = []
    for widget in sorted(dashboard.widgets, key=lambda w: w.position):
        query = session.get(SavedQuery, widget.saved_query_id)
        if query is None:
            raise NotFoundError(f"The saved query of widget {widget.title!r} no longer exists.")
        sections.append((widget.title, query, widget.chart))
    return sections


def _failed(writer: Writer, exc: Exception) -> RenderFailedError:
    log.exception("%s writer failed", writer.format)
    return RenderFailedError(f"Writing the {writer.format.upper()} file failed ({type(exc).__name__}).")


def write_files(ctx: WorkerContext, session, report: ScheduledReport, workdir: Path, now: datetime):
    """One pass over each section's rows, fanned out to every writer.

    Any writer failing fails the whole render: an incomplete set is never sent.
    """
    writers = build_writers(report.formats, workdir, report, pdf_max_rows=ctx.settings.pdf_max_rows)
    total_rows = 0
    truncated = False
    try:
        for title, query, chart in _sections(session, report):
            with open_stream(
                session, query, engines=ctx.engines, settings=ctx.settings, timezone=report.timezone, now=now
            ) as stream:
                section = Section(title, list(stream.columns), chart=chart, filters=describe_filters(query))
                for writer in writers:
                    writer.begin_section(section)
                for row in stream:
                    for writer in writers:
                        try:
                            writer.write_row(row)
                        except Exception as exc:
                            raise _failed(writer, exc) from exc
                for writer in writers:
                    writer.end_section(stream.row_count, stream.truncated)
                total_rows += stream.row_count
                truncated = truncated or stream.truncated
    except BaseException:
        discard_all(writers)
        raise
    return writers, total_rows, truncated


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


def _claim(ctx: WorkerContext, execution_id: uuid.UUID) -> ReportExecution | None:
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        moved = executions.move(session, execution_id, expected="queued", target="running", now=now)
        execution = session.get(ReportExecution, execution_id)
    if not moved:
        state = execution.status if execution else "missing"
        log.info("render skipped: execution is %s", state, extra={"execution_id": str(execution_id)})
        return None
    if execution.trigger == "schedule" and execution.attempts == 1:
        SCHEDULER_LAG.observe(max(0.0, (now - execution.scheduled_for).total_seconds()))
    return execution


def render_execution(ctx: WorkerContext, execution_id: str) -> None:
    exec_id = uuid.UUID(execution_id)
    execution = _claim(ctx, exec_id)
    if execution is None:
        return
    started = time.monotonic()
    extra = {"execution_id": execution_id, "report_id": str(execution.report_id)}
    try:
        with tempfile.TemporaryDirectory(prefix="biapp-render-") as tmp:
            outcome = _render_and_store(ctx, execution, Path(tmp))
    except TransientError as exc:
        _handle_transient(ctx, execution, exc, extra)
        return
    except PermanentError as exc:
        _fail(ctx, exec_id, exc.message, extra)
        return
    except Exception as exc:
        log.exception("render crashed", extra=extra)
        _fail(ctx, exec_id, f"Internal error while rendering ({type(exc).__name__}); see the renderer logs.", extra)
        return
    RENDER_SECONDS.observe(time.monotonic() - started)
    if outcome == "rendered":
        log.info("rendered", extra=extra)
        try:
            ctx.publisher.send("deliver_report", execution_id)
        except Exception:
            # The sweeper re-publishes executions left rendered.
            log.exception("publishing deliver_report failed", extra=extra)
    else:
        EXECUTIONS.labels("skipped", execution.trigger).inc()
        log.info("skipped: no rows and send_if_empty is off", extra=extra)


def _render_and_store(ctx: WorkerContext, execution: ReportExecution, workdir: Path) -> str:
    """Render and store in one transaction; files written outside the database are removed if it fails."""
    saved: list[Artifact] = []
    replaced: list[Artifact] = []
    try:
        outcome = _render_in_transaction(ctx, execution, workdir, saved, replaced)
    except BaseException:
        for artifact in saved:
            ctx.store.discard(artifact)
        raise
    for old in replaced:  # committed: the earlier attempt's files can go
        ctx.store.discard(old)
    return outcome


def _render_in_transaction(
    ctx: WorkerContext, execution: ReportExecution, workdir: Path, saved: list[Artifact], replaced: list[Artifact]
) -> str:
    settings = ctx.settings
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        report = session.get(ScheduledReport, execution.report_id)
        if report is None:
            raise NotFoundError("The report was deleted.")
        zone = ZoneInfo(report.timezone or "UTC")
        run_local = execution.scheduled_for.astimezone(zone)
        writers, row_count, truncated = write_files(ctx, session, report, workdir, now)
        meta = RenderMeta(
            report_name=report.name,
            run_time_local=f"{run_local:%Y-%m-%d %H:%M} {run_local.tzname()}",
            timezone=report.timezone,
            description=report.description,
            max_report_rows=settings.max_report_rows,
        )
        RENDER_ROWS.observe(row_count)
        if row_count == 0 and not report.send_if_empty:
            discard_all(writers)
            executions.move(
                session, execution.id, expected="running", target="skipped", now=ctx.clock.now(), row_count=0
            )
            return "skipped"
        files: list[RenderedFile] = finish_all(writers, meta, base_filename(report.name, run_local))
        # Leftovers of an earlier, interrupted attempt go in the same transaction;
        # their files outside the database are removed once it has committed.
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
                expires_at=now + timedelta(days=settings.artifact_retention_days),
            )
            session.add(artifact)
            with open(rendered.path, "rb") as handle:
                ctx.store.save(session, artifact, handle)
            saved.append(artifact)
        moved = executions.move(
            session,
            execution.id,
            expected="running",
            target="rendered",
            now=ctx.clock.now(),
            row_count=row_count,
            truncated=truncated,
        )
        if not moved:
            # The sweeper failed us meanwhile: keep its verdict, drop our files.
            session.rollback()
            raise PermanentError("The run was stopped while rendering (time limit).")
    return "rendered"


def _handle_transient(ctx: WorkerContext, execution: ReportExecution, exc: TransientError, extra: dict) -> None:
    with transaction(ctx.session_factory) as session:
        current = session.get(ReportExecution, execution.id)
        attempts = current.attempts if current else 0
        if attempts > ctx.settings.render_max_retries:
            executions.move(
                session,
                execution.id,
                expected="running",
                target="failed",
                now=ctx.clock.now(),
                error=f"{exc.message} (gave up after {attempts} attempts)",
            )
            EXECUTIONS.labels("failed", execution.trigger).inc()
            log.warning("render failed for good: %s", exc.message, extra=extra)
            return
        executions.move(
            session, execution.id, expected="running", target="queued", now=ctx.clock.now(), error=exc.message
        )
    log.warning("render will retry: %s", exc.message, extra=extra)
    raise RetryLater(exc.message)


def _fail(ctx: WorkerContext, execution_id: uuid.UUID, message: str, extra: dict) -> None:
    with transaction(ctx.session_factory) as session:
        execution = session.get(ReportExecution, execution_id)
        if executions.fail(session, execution_id, now=ctx.clock.now(), error=message):
            EXECUTIONS.labels("failed", execution.trigger).inc()
    log.warning("render failed: %s", message, extra=extra)
