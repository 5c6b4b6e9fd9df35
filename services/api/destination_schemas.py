"""The destination fields shared by reports and alerts (see services/api/destinations.py)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, post_dump, post_load, validate, validates_schema

from services.api.serialization import FastDump
from shared import destinations
from shared.models.destinations import CHANNELS, ROLES

MAX_RECIPIENTS = 100
MAX_DESTINATIONS = 100


class EmailAddress(fields.String):
    """One email address, normalised (the domain lower-cased); anything else is an error at its index."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValidationError(f"{text!r}: {exc}") from None


def recipient_list(**kwargs) -> fields.List:
    """A list of email addresses: each item checked on its own, so an error names `field.<index>`."""
    return fields.List(EmailAddress(metadata={"format": "email"}), **kwargs)


def unique_addresses(values: list[str]) -> list[str]:
    """The addresses in order, each once (compared case-insensitively)."""
    cleaned: list[str] = []
    seen: set[str] = set()
    for address in values:
        if address.lower() not in seen:
            seen.add(address.lower())
            cleaned.append(address)
    return cleaned


class DestinationSchema(FastDump):
    id = fields.UUID(load_default=None, metadata={"description": "an existing destination's id, to keep it"})
    kind = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    address = EmailAddress(load_default=None, metadata={"format": "email", "description": "email"})
    role = fields.String(load_default="to", validate=validate.OneOf(ROLES), metadata={"description": "email: to|cc"})
    url = fields.String(load_only=True, load_default=None, metadata={"description": "webhook: https URL (secret)"})
    webhook_url = fields.String(
        load_only=True, load_default=None, metadata={"description": "slack or teams: incoming webhook URL (secret)"}
    )
    bot_token = fields.String(load_only=True, load_default=None, metadata={"description": "slack: bot token (secret)"})
    channel = fields.String(load_default=None, metadata={"description": "slack with a bot token: channel id"})
    target = fields.String(dump_only=True, metadata={"description": "where it goes: the address or the URL's host"})
    has_secret = fields.Method("_has_secret", dump_only=True)
    icon = fields.Method("_icon", dump_only=True)
    signing_secret = fields.Method(
        "_signing_secret", dump_only=True, metadata={"description": "webhook: shown once, when created or rotated"}
    )

    def _has_secret(self, obj) -> bool:
        return bool(getattr(obj, "secret_encrypted", None))

    def _icon(self, obj) -> str:
        return destinations.ICONS.get(obj.kind, obj.kind)

    def _signing_secret(self, obj):
        return getattr(obj, "signing_secret_once", None)

    @post_dump
    def _secret_only_once(self, data, **kwargs):
        if data.get("signing_secret") is None:
            data.pop("signing_secret", None)
        return data

    @validates_schema
    def _shape(self, data, **kwargs):
        kind = data.get("kind")
        if kind == "email" and not data.get("address"):
            raise ValidationError("an email destination needs its address", field_name="address")
        if kind != "email" and data.get("address"):
            raise ValidationError("only email destinations have an address", field_name="address")
        if kind != "webhook" and data.get("url") is not None:
            raise ValidationError("only webhooks take url; Slack and Teams take webhook_url", field_name="url")
        if kind not in ("slack", "teams") and data.get("webhook_url") is not None:
            raise ValidationError("only Slack and Teams take webhook_url", field_name="webhook_url")
        if kind != "slack" and (data.get("bot_token") is not None or data.get("channel") is not None):
            raise ValidationError("only Slack takes bot_token and channel", field_name="bot_token")


class WithDestinations(Schema):
    """The destination fields of a report or an alert."""

    destinations = fields.List(
        fields.Nested(DestinationSchema), load_default=None, validate=validate.Length(max=MAX_DESTINATIONS)
    )

    @validates_schema
    def _some_destination(self, data, **kwargs):
        if data.get("destinations") is None and not data.get("recipients"):
            raise ValidationError("give at least one recipient (or destinations)", field_name="recipients")
        if data.get("destinations") is not None and not data["destinations"] and not data.get("recipients"):
            raise ValidationError("give at least one destination", field_name="destinations")

    @post_load
    def _merge_recipients(self, data, **kwargs):
        """recipients/cc become email destinations; each address once (to before cc)."""
        items = data.get("destinations")
        legacy = [{"kind": "email", "address": a, "role": "to"} for a in data.pop("recipients", None) or []]
        legacy += [{"kind": "email", "address": a, "role": "cc"} for a in data.pop("cc", None) or []]
        if items is None:
            data["email_only"] = _unique_emails(legacy)
            data.pop("destinations", None)
            return data
        data["destinations"] = _unique_emails([*items, *legacy])
        return data


def _unique_emails(items: list[dict]) -> list[dict]:
    seen: set[str] = set()
    kept = []
    for item in items:
        if item["kind"] == "email":
            key = item["address"].lower()
            if key in seen:
                continue
            seen.add(key)
        kept.append(item)
    return kept


class _Named(Schema):
    id = fields.String()
    name = fields.String()


class _Section(Schema):
    title = fields.String()
    row_count = fields.Integer(allow_none=True, metadata={"description": "the section's true row count"})
    columns = fields.List(fields.String())
    rows = fields.List(fields.List(fields.String()), metadata={"description": "the first rows (up to 10), as text"})


class _File(Schema):
    filename = fields.String()
    format = fields.String()
    size = fields.Integer()
    url = fields.String(metadata={"description": "a signed download link that needs no login"})
    expires_at = fields.DateTime()


class _WebhookData(Schema):
    report = fields.Nested(_Named, metadata={"description": "report events"})
    alert = fields.Nested(_Named, metadata={"description": "alert events"})
    run_id = fields.String(metadata={"description": "the execution id (reports) or the alert event id"})
    status = fields.String(metadata={"description": "rendered (files ready) for runs; true | false | error for alerts"})
    subject = fields.String()
    summary = fields.String()
    timezone = fields.String()
    scheduled_for = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    row_count = fields.Integer(allow_none=True)
    sections = fields.List(fields.Nested(_Section))
    files = fields.List(fields.Nested(_File))
    open_url = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    facts = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "alerts: condition"})


class WebhookPayloadSchema(Schema):
    """The JSON body POSTed to a webhook destination, signed per Standard Webhooks (headers webhook-id,
    webhook-timestamp, webhook-signature: v1,base64(HMAC-SHA256(secret, id.timestamp.body)))."""

    type = fields.String(
        metadata={
            "enum": [
                "report.delivered",
                "report.test",
                "report.failed",
                "alert.triggered",
                "alert.recovered",
                "alert.error",
                "destination.test",
            ]
        }
    )
    timestamp = fields.DateTime()
    data = fields.Nested(_WebhookData)
