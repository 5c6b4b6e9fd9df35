"""Execution details and artifact downloads."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, stream_with_context

from services.api.executions.listing import execution_page
from services.api.executions.schemas import AllHistoryArgs, ExecutionSchema
from services.api.pagination import cursor_page_schema
from services.api.parsing import Blueprint
from services.api.runtime import db, runtime
from services.api.security import get_owned, login_required, me
from shared.errors import GoneError, NotFoundError
from shared.models import Artifact, ReportExecution, ScheduledReport

blp = Blueprint("executions", __name__, url_prefix="/api/executions", description="Runs of reports")


def visible_execution(execution_id) -> ReportExecution:
    execution = db().get(ReportExecution, execution_id)
    if execution is None:
        raise NotFoundError("No such execution.")
    get_owned(ScheduledReport, execution.report_id, what="execution")
    return execution


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(AllHistoryArgs, location="query")
@blp.response(200, cursor_page_schema(ExecutionSchema))
def list_all_executions(args):
    """Runs of every report the caller may see (an admin: all), newest first; page by `cursor`.

    The same filters as a report's history, plus `report_id`; a report the caller may not see adds nothing.
    """
    owner = None if me().role == "admin" else me().id
    return execution_page(db(), args, report_ids=args["report_id"], owner_id=owner)


@blp.route("/<uuid:execution_id>", methods=["GET"])
@login_required()
@blp.response(200, ExecutionSchema)
def get_execution(execution_id):
    """The whole timeline of one run, with its deliveries and files."""
    return visible_execution(execution_id)


def content_disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def stream_artifact(artifact: Artifact) -> Response:
    """The file in chunks from whichever store holds it; 410 once expired or purged."""
    if artifact.purged_at is not None or artifact.expires_at <= runtime().clock.now():
        raise GoneError("This file has expired and was removed.")
    session = runtime().session_factory()
    chunks = iter(runtime().store.open(session, artifact))
    try:
        first = next(chunks, None)
    except Exception:
        session.close()
        raise
    if first is None and artifact.size > 0:
        session.close()
        raise GoneError("This file is no longer available.")

    def generate():
        try:
            if first is not None:
                yield first
            yield from chunks
        finally:
            session.close()

    response = Response(stream_with_context(generate()), content_type=artifact.content_type)
    response.headers["Content-Disposition"] = content_disposition(artifact.filename)
    response.headers["Content-Length"] = str(artifact.size)
    response.headers["X-Content-SHA256"] = artifact.sha256
    response.headers["ETag"] = f'"{artifact.sha256}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/<uuid:execution_id>/artifacts/<uuid:artifact_id>", methods=["GET"])
@login_required()
@blp.response(200, {"format": "binary", "type": "string"}, content_type="application/octet-stream")
def download_artifact(execution_id, artifact_id):
    """Download one rendered file (410 once it has expired)."""
    visible_execution(execution_id)
    artifact = (
        db()
        .execute(sa.select(Artifact).where(Artifact.id == artifact_id, Artifact.execution_id == execution_id))
        .scalar_one_or_none()
    )
    if artifact is None:
        raise NotFoundError("No such file.")
    return stream_artifact(artifact)
