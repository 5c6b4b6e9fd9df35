from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.api.destination_schemas import MAX_RECIPIENTS, WithDestinations, recipient_list
from services.api.executions.schemas import DeliverySchema
from services.api.pagination import CursorPageArgs
from services.api.reports.schemas import ScheduleSchema
from services.api.serialization import FastDump
from shared.alerts import parse_condition
from shared.errors import FieldError
from shared.models.alerts import ALERT_TRIGGERS, EVENT_STATES, NOTIFY_MODES


class ConditionField(fields.Dict):
    """A condition object; checked as a whole by AlertSchema so errors name `condition.<key>`."""


class AlertSchema(WithDestinations):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, load_default=None)
    saved_query_id = fields.UUID(required=True)
    condition = ConditionField(
        required=True,
        metadata={
            "description": '{"kind": "row_count", "op": "gt|gte|lt|lte|eq|ne", "value": N} or {"kind": "value", '
            '"column": "...", "aggregate": "first|min|max|sum|any|all", "op": "...", "value": number|string}'
        },
    )
    schedule = fields.Nested(ScheduleSchema, required=True)
    recipients = recipient_list(load_default=None, validate=validate.Length(max=MAX_RECIPIENTS))
    cc = recipient_list(load_default=None, validate=validate.Length(max=MAX_RECIPIENTS))
    notify = fields.String(load_default="on_change", validate=validate.OneOf(NOTIFY_MODES))
    notify_on_recovery = fields.Boolean(load_default=False)
    notify_on_error = fields.Boolean(load_default=False)
    is_active = fields.Boolean(load_default=True)
    next_run_at = fields.DateTime(dump_only=True, allow_none=True)
    last_state = fields.String(dump_only=True, allow_none=True)
    last_evaluated_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @validates_schema
    def _condition(self, data, **kwargs):
        if "condition" not in data:
            return
        try:
            parse_condition(data["condition"])
        except FieldError as exc:
            [(field, messages)] = exc.errors.items()
            raise ValidationError(messages, field_name=field) from None

    @post_load
    def _normalise(self, data, **kwargs):
        data["condition"] = parse_condition(data["condition"]).as_dict()
        return data


class AlertDeliverySchema(DeliverySchema):
    class Meta:
        exclude = ("smtp_reply",)


class AlertEventSchema(FastDump):
    id = fields.UUID()
    alert_id = fields.UUID()
    trigger = fields.String()
    state = fields.String(metadata={"description": "pending until evaluated, then true, false or error"})
    scheduled_for = fields.DateTime()
    queued_at = fields.DateTime()
    evaluated_at = fields.DateTime(allow_none=True)
    observed = fields.Raw(allow_none=True)
    row_count = fields.Integer(allow_none=True)
    message = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    notified = fields.Boolean()
    notify_reason = fields.String(allow_none=True)
    deliveries = fields.List(fields.Nested(AlertDeliverySchema))


class EventArgs(CursorPageArgs):
    state = fields.String(load_default=None, validate=validate.OneOf(EVENT_STATES))
    trigger = fields.String(load_default=None, validate=validate.OneOf(ALERT_TRIGGERS))


class EvaluateAcceptedSchema(Schema):
    event_id = fields.UUID()
    state = fields.String()
