"""Scheduled reports: CRUD, run now, test, history and upcoming runs."""

from __future__ import annotations

import sqlalchemy as sa

from services.api import destinations as destinations_api
from services.api.executions.listing import execution_page
from services.api.executions.schemas import ExecutionSchema
from services.api.pagination import CursorPageArgs, cursor_page_schema
from services.api.parsing import Blueprint, text_problem
from services.api.patching import patch_schema, patched_with_destinations
from services.api.reports.listing import DumpCache, report_page
from services.api.reports.schemas import (
    HistoryArgs,
    MessagePreviewRequestSchema,
    MessagePreviewSchema,
    NextRunsArgs,
    NextRunSchema,
    ReportSchema,
    RunAcceptedSchema,
    UnsubscriptionSchema,
)
from services.api.runtime import db, runtime
from services.api.security import check_visible, get_owned, login_required, me, only_visible
from services.api.serialization import json_response
from services.mailer.message_preview import preview_message
from shared import reports, runs, unsubscribe
from shared.errors import NotFoundError
from shared.models import ScheduledReport

blp = Blueprint("scheduled_reports", __name__, url_prefix="/api/scheduled-reports", description="Scheduled reports")


def _with_summary(items: list[ScheduledReport]) -> list[ScheduledReport]:
    latest, gone = _summaries([r.id for r in items])
    for item in items:
        item.last_execution = latest.get(item.id)
        item.unsubscribed = gone.get(item.id, [])
    return items


def _get(report_id, *, writable: bool = False) -> ScheduledReport:
    return get_owned(ScheduledReport, report_id, writable=writable, what="report")


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(CursorPageArgs, location="query")
@blp.response(200, cursor_page_schema(ReportSchema))
def list_reports(args):
    """Reports by name, each with its last run and its next run; page by `cursor` (or `offset`)."""
    query = only_visible(sa.select(ScheduledReport), ScheduledReport)
    body, headers = report_page(db(), query, args, _DUMPS, _summaries)
    return json_response(body, headers)


def _summaries(report_ids: list) -> tuple[dict, dict]:
    """Each report's last run and its unsubscribed addresses (sorted), two queries for a whole page."""
    gone = unsubscribe.unsubscribed_by_report(db(), report_ids)
    return reports.last_executions(db(), report_ids), {key: sorted(value) for key, value in gone.items()}


# Report dumps by state, reused while a report is unchanged (services/api/reports/listing.py).
_DUMPS = DumpCache(ReportSchema())


@blp.route("", methods=["POST"])
@login_required()
@blp.arguments(ReportSchema)
@blp.response(201, ReportSchema)
def create_report(data):
    session = db()
    user = me()
    reports.check_source(session, user, data)
    report = ScheduledReport(owner_id=user.id, is_active=data["is_active"])
    destinations_api.apply(report, data)
    reports.apply_changes(report, data, runtime().clock.now())
    session.add(report)
    session.commit()
    return _with_summary([report])[0]


@blp.route("/preview-message", methods=["POST"])
@login_required()
@blp.arguments(MessagePreviewRequestSchema)
@blp.response(200, MessagePreviewSchema)
def preview_report_message(data):
    """A report's subject and body as given (saved or not), rendered as a run would send them, with sample values.

    A template that would fail is a 422 naming `subject` or `body`, as when the report is saved. `locale` is
    checked as a report's; the subject and body do not depend on it (their variables are not localised).
    """
    return preview_message(
        data["name"], data["subject"], data["body"], timezone=data["timezone"], now=runtime().clock.now()
    )


@blp.route("/<uuid:report_id>", methods=["GET"])
@login_required()
@blp.response(200, ReportSchema)
def get_report(report_id):
    return _with_summary([_get(report_id)])[0]


def _update(report: ScheduledReport, data: dict) -> ScheduledReport:
    session = db()
    reports.check_source(session, me(), data)
    destinations_api.apply(report, data)
    reports.update_report(session, report, data, runtime().clock.now())
    session.commit()
    return _with_summary([report])[0]


@blp.route("/<uuid:report_id>", methods=["PUT"])
@login_required()
@blp.arguments(ReportSchema)
@blp.response(200, ReportSchema)
def update_report(data, report_id):
    return _update(_get(report_id, writable=True), data)


@blp.route("/<uuid:report_id>", methods=["PATCH"])
@login_required()
@blp.arguments(patch_schema(ReportSchema))
@blp.response(200, ReportSchema)
def patch_report(patch, report_id):
    """Change only the fields given, by PUT's rules.

    `{"is_active": false}` pauses the report and cancels its scheduled runs not yet started; `recipients`
    or `cc` replace only the email destinations of that role; a nested object (`schedule`) is replaced whole.
    """
    report = _get(report_id, writable=True)
    return _update(report, patched_with_destinations(ReportSchema(), report, patch))


@blp.route("/<uuid:report_id>", methods=["DELETE"])
@login_required()
@blp.response(204)
def delete_report(report_id):
    session = db()
    report = _get(report_id, writable=True)
    reports.delete_report(session, runtime().store, report)
    session.commit()


def _start(report_id, trigger: str) -> tuple[dict, int]:
    report = _get(report_id)
    rt = runtime()
    execution = runs.run_now(
        rt.session_factory, rt.publisher, report.id, trigger=trigger, requester=me(), now=rt.clock.now()
    )
    return {"execution_id": execution.id, "status": execution.status}, 202


@blp.route("/<uuid:report_id>/run", methods=["POST"])
@login_required()
@blp.response(202, RunAcceptedSchema)
def run_report(report_id):
    """Run now for every recipient; next_run_at does not move."""
    return _start(report_id, "manual")


@blp.route("/<uuid:report_id>/test", methods=["POST"])
@login_required()
@blp.response(202, RunAcceptedSchema)
def test_report(report_id):
    """Render and send only to the caller, with [TEST] in the subject."""
    return _start(report_id, "test")


@blp.route("/<uuid:report_id>/executions", methods=["GET"])
@login_required()
@blp.arguments(HistoryArgs, location="query")
@blp.response(200, cursor_page_schema(ExecutionSchema))
def list_executions(args, report_id):
    """Runs of this report, newest first; filter by status, trigger and a from/to range; page by `cursor`."""
    return execution_page(
        db(),
        args,
        report_ids=[report_id],
        owner_id=None if me().role == "admin" else me().id,
        on_empty=lambda: check_visible(ScheduledReport, report_id, what="report"),
    )


@blp.route("/<uuid:report_id>/next-runs", methods=["GET"])
@login_required()
@blp.arguments(NextRunsArgs, location="query")
@blp.response(200, NextRunSchema(many=True))
def next_runs(args, report_id):
    """Preview the next runs (up to 366) in UTC and in the report's time zone."""
    report = _get(report_id)
    return reports.upcoming_runs(report, runtime().clock.now(), args["count"])


@blp.route("/<uuid:report_id>/destinations/<uuid:destination_id>/test", methods=["POST"])
@login_required()
@destinations_api.test_limit
@blp.response(200, destinations_api.DestinationTestResultSchema)
def test_destination(report_id, destination_id):
    """Send a test message to one destination now; the answer is what the far end said."""
    owner = _get(report_id, writable=True)
    return destinations_api.send_test(owner, destinations_api.find(owner, destination_id), what="report")


@blp.route("/<uuid:report_id>/destinations/<uuid:destination_id>/rotate-secret", methods=["POST"])
@login_required()
@blp.response(200, destinations_api.RotatedSecretSchema)
def rotate_destination_secret(report_id, destination_id):
    """A new webhook signing secret, shown once; the old one stops working at once."""
    owner = _get(report_id, writable=True)
    result = destinations_api.rotate(destinations_api.find(owner, destination_id))
    db().commit()
    return result


@blp.route("/<uuid:report_id>/unsubscriptions", methods=["GET"])
@login_required()
@blp.response(200, UnsubscriptionSchema(many=True))
def list_unsubscriptions(report_id):
    """Who unsubscribed with the link in their email, and when, oldest first; runs leave them out."""
    report = _get(report_id)
    return unsubscribe.listed(db(), report.id)


@blp.route("/<uuid:report_id>/unsubscriptions/<string:address>", methods=["DELETE"])
@login_required()
@blp.response(204)
def resubscribe(report_id, address):
    """Send the report to this address again from the next run on (404 if it had not unsubscribed)."""
    report = _get(report_id, writable=True)
    if text_problem(address) or not unsubscribe.forget(db(), report.id, address):
        raise NotFoundError("This address has not unsubscribed from this report.")
    db().commit()
