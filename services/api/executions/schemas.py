from marshmallow import Schema, fields


class DeliverySchema(Schema):
    recipient = fields.String()
    kind = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
    smtp_reply = fields.String(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)


class ArtifactSchema(Schema):
    id = fields.UUID()
    format = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    expires_at = fields.DateTime()
    purged_at = fields.DateTime(allow_none=True)


class ExecutionSchema(Schema):
    id = fields.UUID()
    report_id = fields.UUID()
    trigger = fields.String()
    status = fields.String()
    scheduled_for = fields.DateTime()
    queued_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    rendered_at = fields.DateTime(allow_none=True)
    sending_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Method("_duration", allow_none=True)
    row_count = fields.Integer(allow_none=True)
    truncated = fields.Boolean()
    attempts = fields.Integer()
    late = fields.Boolean()
    error = fields.String(allow_none=True)
    deliveries = fields.List(fields.Nested(DeliverySchema))
    artifacts = fields.Method("_artifacts")

    def _duration(self, execution):
        if execution.started_at and execution.finished_at:
            return int((execution.finished_at - execution.started_at).total_seconds() * 1000)
        return None

    def _artifacts(self, execution):
        live = [a for a in execution.artifacts if a.purged_at is None]
        return ArtifactSchema(many=True).dump(live)
