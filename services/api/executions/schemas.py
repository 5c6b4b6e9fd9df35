from flask import url_for
from marshmallow import fields
from webargs.fields import DelimitedList

from services.api.reports.schemas import HistoryArgs
from services.api.serialization import FastDump
from shared.destinations import ICONS


class DeliverySchema(FastDump):
    """One destination of a run: its channel, where it went, what happened and what the far end said."""

    destination_id = fields.UUID(allow_none=True)
    kind = fields.String(attribute="channel", metadata={"description": "email | webhook | slack | teams"})
    icon = fields.Method("_icon", metadata={"description": "an icon name for the channel"})
    target = fields.Method("_target", metadata={"description": "the email address, or the URL's host"})
    recipient = fields.Method("_recipient", metadata={"description": "email: the address (older clients)"})
    role = fields.String(attribute="kind", metadata={"description": "email: to | cc"})
    status = fields.String(metadata={"description": "pending | sent | failed"})
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
    answer = fields.Method("_answer", allow_none=True, metadata={"description": "the remote answer, truncated"})
    smtp_reply = fields.String(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)

    def _icon(self, obj) -> str:
        return ICONS.get(obj.channel or "email", "mail")

    def _target(self, obj) -> str:
        return obj.target or obj.recipient

    def _recipient(self, obj) -> str:
        return obj.recipient if (obj.channel or "email") == "email" else (obj.target or obj.recipient)

    def _answer(self, obj):
        return obj.answer or getattr(obj, "smtp_reply", None)


class ArtifactSchema(FastDump):
    id = fields.UUID()
    format = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    expires_at = fields.DateTime()
    purged_at = fields.DateTime(allow_none=True)
    download_url = fields.Method(
        "_download_url",
        metadata={"description": "where to GET the file on this API, with the same bearer token (410 once expired)"},
    )

    def _download_url(self, artifact) -> str:
        return url_for("executions.download_artifact", execution_id=artifact.execution_id, artifact_id=artifact.id)


class ExecutionSchema(FastDump):
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
        return _ARTIFACTS.dump(live)


# Built once: a schema's construction costs more than dumping a run's few files.
_ARTIFACTS = ArtifactSchema(many=True)


class AllHistoryArgs(HistoryArgs):
    report_id = DelimitedList(
        fields.UUID(), load_default=list, metadata={"description": "only runs of these reports (comma-separated ids)"}
    )
