from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates, validates_schema
from webargs.fields import DelimitedList

from services.api.destination_schemas import (  # noqa: F401 (alerts import these from here)
    MAX_RECIPIENTS,
    EmailAddress,
    WithDestinations,
    recipient_list,
    unique_addresses,
)
from services.api.pagination import CursorPageArgs
from services.api.serialization import FastDump
from services.mailer.message_preview import SAMPLE_ROW_COUNT
from shared import formats
from shared.models.reports import CSV_SEPARATORS, EXECUTION_STATES, FORMATS, TRIGGERS
from shared.schedules import WEEKDAY_HINT, ScheduleError, check_zone, parse_schedule, weekday_number

MAX_NEXT_RUNS = 366


class Weekday(fields.Field):
    """A day of the week: its number (0 = Monday … 6 = Sunday), or `mon` … `sun` in any case; stored as the number."""

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        try:
            return weekday_number(value)
        except ScheduleError as exc:
            raise ValidationError(exc.message) from None


class ScheduleSchema(FastDump):
    frequency = fields.String(required=True, validate=validate.OneOf(("daily", "weekly", "monthly", "cron")))
    time = fields.String(load_default="09:00")
    days_of_week = fields.List(
        Weekday(metadata={"oneOf": [{"type": "integer", "minimum": 0, "maximum": 6}, {"type": "string"}]}),
        load_default=list,
        metadata={"description": f"weekly: the days, {WEEKDAY_HINT} (any case); answered as numbers"},
    )
    day_of_month = fields.Integer(allow_none=True, load_default=None)
    cron = fields.String(allow_none=True, load_default=None)
    timezone = fields.String(load_default="UTC")

    @validates_schema
    def _check(self, data, **kwargs):
        try:
            parse_schedule(data)
        except ScheduleError as exc:
            raise ValidationError(exc.message, field_name=exc.field) from None


class ExecutionSummarySchema(FastDump):
    id = fields.UUID()
    status = fields.String()
    trigger = fields.String()
    scheduled_for = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    error = fields.String(allow_none=True)


class MessageSchema(Schema):
    """A report's name and message: what its email says and in which language (ReportSchema and the preview)."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    subject = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))
    body = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=20_000))
    locale = fields.String(
        load_default="en-US",
        validate=validate.Length(min=2, max=35),
        metadata={
            "description": "how numbers, currencies and dates read, and the language of the email's own words "
            "(en, de, fr, es): a BCP 47 locale such as `de-DE`"
        },
    )

    @validates("subject")
    def _subject(self, value, **kwargs):
        if value and ("\r" in value or "\n" in value):
            raise ValidationError("must be a single line")

    @validates("locale")
    def _locale(self, value, **kwargs):
        try:
            formats.check_locale(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    @post_load
    def _normalise_locale(self, data, **kwargs):
        if data.get("locale"):
            data["locale"] = formats.check_locale(data["locale"])
        return data


class ReportSchema(FastDump, WithDestinations, MessageSchema):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    description = fields.String(allow_none=True)
    saved_query_id = fields.UUID(allow_none=True, load_default=None)
    dashboard_id = fields.UUID(allow_none=True, load_default=None)
    schedule = fields.Nested(ScheduleSchema, required=True)
    recipients = recipient_list(
        load_default=None,
        validate=validate.Length(max=MAX_RECIPIENTS),
        metadata={"description": "email addresses (To); the same as email destinations"},
    )
    cc = recipient_list(load_default=None, validate=validate.Length(max=MAX_RECIPIENTS))
    formats = fields.List(
        fields.String(validate=validate.OneOf(FORMATS)), required=True, validate=validate.Length(min=1)
    )
    send_if_empty = fields.Boolean(load_default=True)
    send_only_if_changed = fields.Boolean(
        load_default=False,
        metadata={
            "description": "skip a run (status `skipped`, nothing sent) whose rows are the same as those of the "
            "last run that reached its recipients; test runs always send"
        },
    )
    csv_bom = fields.Boolean(
        load_default=False,
        metadata={"description": "start CSV files with a UTF-8 byte order mark, so Excel on Windows reads UTF-8"},
    )
    csv_separator = fields.String(
        load_default=",",
        validate=validate.OneOf(CSV_SEPARATORS, error="must be one of ',' ';' '|' or a tab ('\\t')"),
        metadata={"description": "the CSV field separator: `,` (default), `;`, `|` or a tab"},
    )
    is_active = fields.Boolean(load_default=True)
    next_run_at = fields.DateTime(dump_only=True, allow_none=True)
    last_execution = fields.Nested(ExecutionSummarySchema, dump_only=True, allow_none=True)
    unsubscribed = fields.List(
        fields.String(),
        dump_only=True,
        metadata={
            "description": "addresses that unsubscribed from their email; runs skip them (see …/unsubscriptions)"
        },
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @validates_schema
    def _one_source(self, data, **kwargs):
        if bool(data.get("saved_query_id")) == bool(data.get("dashboard_id")):
            raise ValidationError("give exactly one of saved_query_id or dashboard_id", field_name="saved_query_id")

    @post_load
    def _normalise(self, data, **kwargs):
        data["formats"] = list(dict.fromkeys(data["formats"]))
        return data


class UnsubscriptionSchema(Schema):
    address = fields.String(metadata={"description": "lower-case"})
    unsubscribed_at = fields.DateTime(attribute="created_at")


class RunAcceptedSchema(Schema):
    execution_id = fields.UUID()
    status = fields.String()


class _Moment(fields.Field):
    """An ISO 8601 date or date-time; a naive value is UTC. A bare date is that day's start,
    or with `end_of_day` the start of the next day (so `to=2024-06-30` includes the 30th)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        message = "must be an ISO 8601 date (2024-06-30) or date-time"
        if not isinstance(value, str):
            raise ValidationError(message)
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if self.end_of_day and len(value.strip()) == 10:
                moment += timedelta(days=1)
            # In UTC, as the database compares it: 0001-01-01T00:00+14:00 or 9999-12-31 to= have no UTC instant.
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        except ValueError:
            raise ValidationError(message) from None
        except OverflowError:
            raise ValidationError("must be between the years 1 and 9999 (in UTC)") from None


class HistoryArgs(CursorPageArgs):
    status = DelimitedList(fields.String(validate=validate.OneOf(EXECUTION_STATES)), load_default=list)
    trigger = DelimitedList(fields.String(validate=validate.OneOf(TRIGGERS)), load_default=list)
    since = _Moment(data_key="from", load_default=None)
    until = _Moment(data_key="to", load_default=None, end_of_day=True)

    @validates_schema
    def _range(self, data, **kwargs):
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            raise ValidationError("must be after 'from'", field_name="to")


class NextRunsArgs(Schema):
    count = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_NEXT_RUNS))


class NextRunSchema(Schema):
    at_utc = fields.DateTime()
    at_local = fields.DateTime()
    dst = fields.String(
        allow_none=True,
        metadata={"description": "gap: the local time does not exist that day; fold: it happens twice"},
    )
    note = fields.String(allow_none=True, metadata={"description": "the daylight-saving adjustment in words"})


class MessagePreviewRequestSchema(MessageSchema):
    timezone = fields.String(
        load_default="UTC", metadata={"description": "the schedule's IANA time zone: `date` and `run_time` are in it"}
    )

    @validates("timezone")
    def _timezone(self, value, **kwargs):
        try:
            check_zone(value)
        except ScheduleError as exc:
            raise ValidationError(exc.message) from None


class MessageSampleSchema(Schema):
    """The template variables of the preview, as the templates see them."""

    report_name = fields.String()
    date = fields.String(metadata={"description": "today in the time zone, YYYY-MM-DD"})
    run_time = fields.String(metadata={"description": "now in the time zone, YYYY-MM-DD HH:MM and its abbreviation"})
    row_count = fields.Integer(metadata={"description": f"always {SAMPLE_ROW_COUNT}: a preview runs no query"})
    timezone = fields.String()


class MessagePreviewSchema(Schema):
    subject = fields.String(metadata={"description": "as a run sends it (one line; a test run adds `[TEST] `)"})
    html = fields.String(
        metadata={"description": "the body as the email shows it, sanitised (no layout around it); empty if none"}
    )
    text = fields.String(metadata={"description": "the body's plain-text part"})
    sample = fields.Nested(MessageSampleSchema)
