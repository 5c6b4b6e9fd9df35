"""Upcoming runs of a schedule that is not saved yet: the live preview of a report or alert editor."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.api.parsing import Blueprint
from services.api.reports.schemas import MAX_NEXT_RUNS, NextRunSchema, ScheduleSchema
from services.api.runtime import runtime
from services.api.security import login_required
from shared.schedule_notes import describe_runs
from shared.schedules import parse_schedule, upcoming

blp = Blueprint("schedules", __name__, url_prefix="/api/schedules", description="Schedule previews")


class NextRunsRequestSchema(Schema):
    schedule = fields.Nested(ScheduleSchema, required=True)
    count = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_NEXT_RUNS))


@blp.route("/next-runs", methods=["POST"])
@login_required()
@blp.arguments(NextRunsRequestSchema)
@blp.response(200, NextRunSchema(many=True))
def preview_next_runs(body):
    """The next runs of a schedule as given (the same rules and notes as a saved report's next-runs)."""
    schedule = parse_schedule(body["schedule"])
    return describe_runs(schedule, upcoming(schedule, runtime().clock.now(), body["count"]))
