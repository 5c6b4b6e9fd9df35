"""SMTP settings: your own (default) or the system-wide default (?scope=system, admin).

`GET` answers the settings that will actually send your reports, yours or else the system default, and
says which in `source` (`own`, `system_default` or `none`); a non-admin sees the system default's sender,
never its server or login.

The password is write-only: it is encrypted on the way in and never answered.
`POST …/test` tries a configuration (the saved one, or one in the body before
saving it) and answers `ok` plus a precise `reason` when it fails.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.api.limits import limiter
from services.api.parsing import Blueprint
from services.api.patching import patch_schema, patched
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared import email_configs
from shared.errors import (
    FieldError,
    NotFoundError,
    OutboundRefusedError,
    PermissionDeniedError,
    SmtpConfigurationError,
)
from shared.models import EmailConfig
from shared.models.email import SMTP_SECURITY
from shared.security import bound_secrets
from shared.smtp import SmtplibTransport, check_connection

blp = Blueprint("email_config", __name__, url_prefix="/api/email-config", description="SMTP configuration")


class ScopeArgs(Schema):
    scope = fields.String(load_default="user", validate=validate.OneOf(("user", "system")))


class EmailConfigSchema(Schema):
    id = fields.UUID(dump_only=True)
    scope = fields.Method("_scope", dump_only=True)
    host = fields.String(required=True, validate=validate.Length(min=1, max=255))
    port = fields.Integer(required=True, validate=validate.Range(min=1, max=65535))
    security = fields.String(load_default="starttls", validate=validate.OneOf(SMTP_SECURITY))
    username = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=320))
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=1024))
    has_password = fields.Method("_has_password", dump_only=True)
    from_address = fields.Email(required=True)
    from_name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    reply_to = fields.Email(allow_none=True, load_default=None)
    updated_at = fields.DateTime(dump_only=True)

    source = fields.Method(
        "_source", dump_only=True, metadata={"description": "own | system_default: whose settings these are"}
    )

    def _scope(self, config) -> str:
        return "system" if config.owner_id is None else "user"

    def _source(self, config) -> str:
        return "system_default" if config.owner_id is None else "own"

    def _has_password(self, config) -> bool:
        return bool(config.password_encrypted)


class EffectiveEmailConfigSchema(Schema):
    """The configuration that sends your reports, and where it comes from (never a password)."""

    source = fields.String(
        metadata={
            "enum": ["own", "system_default", "none"],
            "description": "own: yours; system_default: the admin-set default (you have none of your own); "
            "none: nothing is set, so reports cannot be emailed",
        }
    )
    scope = fields.String(allow_none=True, metadata={"description": "user | system: the record shown"})
    id = fields.UUID(allow_none=True)
    host = fields.String(allow_none=True, metadata={"description": "the system default's server: admins only"})
    port = fields.Integer(allow_none=True)
    security = fields.String(allow_none=True)
    username = fields.String(allow_none=True)
    has_password = fields.Boolean(allow_none=True)
    from_address = fields.String(allow_none=True)
    from_name = fields.String(allow_none=True)
    reply_to = fields.String(allow_none=True)
    updated_at = fields.DateTime(allow_none=True)
    note = fields.String(metadata={"description": "what this means for your reports, in words"})


_SERVER_FIELDS = ("host", "port", "security", "username", "has_password")
_NOTES = {
    "own": "Your reports are sent with your own settings.",
    "system_default": "You have no settings of your own: your reports are sent with the system default an admin set.",
    "none": "No email settings: save yours with PUT /api/email-config (or ask an admin for a system default); "
    "until then reports cannot be emailed.",
}


def _described(found: email_configs.EffectiveConfig) -> dict:
    """The effective configuration as answered: a non-admin sees the system default's sender, not its server."""
    body = dict.fromkeys(EffectiveEmailConfigSchema().fields) | {"source": found.source, "note": _NOTES[found.source]}
    config = found.config
    if config is None:
        return body
    body.update(
        {name: getattr(config, name) for name in ("id", "host", "port", "security", "username", "updated_at")},
        scope="system" if config.owner_id is None else "user",
        has_password=bool(config.password_encrypted),
        from_address=config.from_address,
        from_name=config.from_name,
        reply_to=config.reply_to,
    )
    if found.source == "system_default" and me().role != "admin":
        body.update(dict.fromkeys((*_SERVER_FIELDS, "id"), None))
    return body


class PresetSchema(Schema):
    key = fields.String()
    name = fields.String()
    host = fields.String()
    port = fields.Integer()
    security = fields.String()
    username_hint = fields.String()
    notes = fields.String()
    allowed = fields.Boolean(metadata={"description": "false when BIAPP_SMTP_ALLOWED_HOSTS excludes this host"})


class EmailConfigTestSchema(Schema):
    """The same fields as PUT (all optional: without `host` the saved configuration is tested)."""

    host = fields.String(validate=validate.Length(min=1, max=255))
    port = fields.Integer(validate=validate.Range(min=1, max=65535))
    security = fields.String(validate=validate.OneOf(SMTP_SECURITY))
    username = fields.String(allow_none=True, validate=validate.Length(max=320))
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=1024))
    from_address = fields.Email()
    from_name = fields.String(allow_none=True, validate=validate.Length(max=200))
    reply_to = fields.Email(allow_none=True)
    send_test_message = fields.Boolean(
        load_default=False, metadata={"description": "also send a test message to your own address"}
    )


class EmailConfigTestResultSchema(Schema):
    ok = fields.Boolean()
    reason = fields.String(
        allow_none=True,
        metadata={
            "description": "dns | refused | timeout | tls | authentication | sender_rejected | recipient_rejected | "
            "message_rejected | disconnected | network | protocol | not_allowed; for a non-admin's own server "
            "every connection failure is `unreachable` (it does not tell a closed port from a filtered one)"
        },
    )
    message = fields.String()
    steps = fields.List(fields.String())
    sent_to = fields.String(allow_none=True)


def _outbound(scope: str):
    """Connections a non-admin configures obey the outbound policy; the admin's (and the system default) do not."""
    return None if scope == "system" else email_configs.outbound_for(runtime().settings, me().role)


def _check_destination(host: str, port: int, outbound) -> None:
    try:
        email_configs.check_destination(runtime().settings, host, port, outbound)
    except (SmtpConfigurationError, OutboundRefusedError) as exc:
        raise FieldError("host", exc.message) from None


def _owner(scope: str):
    if scope == "system":
        if me().role != "admin":
            raise PermissionDeniedError("Only an admin can see or change the system default.")
        return None
    return me().id


def _find(scope: str) -> EmailConfig | None:
    session = db()
    if scope == "system":
        return email_configs.system_default(session)
    return email_configs.for_owner(session, me().id)


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(ScopeArgs, location="query")
@blp.response(200, EffectiveEmailConfigSchema)
def get_config(args):
    """The settings your reports are sent with: yours, else the system default (`source` says which).

    `?scope=system` (admins) shows the system default itself. Passwords are never answered.
    """
    _owner(args["scope"])
    if args["scope"] == "system":
        config = _find("system")
        found = email_configs.EffectiveConfig("system_default" if config else "none", config)
    else:
        found = email_configs.effective_for(db(), me().id)
    return _described(found)


def _save(scope: str, config: EmailConfig | None, data: dict) -> EmailConfig:
    owner = _owner(scope)
    _check_destination(data["host"], data["port"], _outbound(scope))
    if config is None:
        config = EmailConfig(owner_id=owner, is_system_default=owner is None)
        db().add(config)
    bound_secrets.apply_secret(config, data, runtime().secrets)
    db().commit()
    return config


@blp.route("", methods=["PUT"])
@login_required()
@blp.arguments(ScopeArgs, location="query")
@blp.arguments(EmailConfigSchema)
@blp.response(200, EmailConfigSchema)
def put_config(args, data):
    """Save the settings; without `password`, a changed host, port or user name clears the stored one."""
    _owner(args["scope"])
    return _save(args["scope"], _find(args["scope"]), data)


@blp.route("", methods=["PATCH"])
@login_required()
@blp.arguments(ScopeArgs, location="query")
@blp.arguments(patch_schema(EmailConfigSchema))
@blp.response(200, EmailConfigSchema)
def patch_config(args, patch):
    """Change only the fields given, by PUT's rules.

    The stored password stays unless host, port or user name change without it. 404 before any PUT.
    """
    _owner(args["scope"])
    config = _find(args["scope"])
    if config is None:
        raise NotFoundError("No email configuration yet: create one with PUT.")
    return _save(args["scope"], config, patched(EmailConfigSchema(), config, patch))


@blp.route("", methods=["DELETE"])
@login_required()
@blp.arguments(ScopeArgs, location="query")
@blp.response(204)
def delete_config(args):
    _owner(args["scope"])
    config = _find(args["scope"])
    if config is None:
        raise NotFoundError("No email configuration yet.")
    session = db()
    session.delete(config)
    session.commit()


@blp.route("/presets", methods=["GET"])
@login_required()
@blp.response(200, PresetSchema(many=True))
def list_presets():
    """Gmail, Outlook / Microsoft 365, Yahoo, Amazon SES and a custom server: ports, security and notes."""
    return email_configs.presets(runtime().settings)


def _settings_to_test(scope: str, data: dict):
    """The body's settings when it names a host, else the saved configuration (yours, else the system default).

    A stored password is only used for the endpoint it was saved with (host, port, user name).
    """
    session = db()
    settings, secrets = runtime().settings, runtime().secrets
    stored = _find(scope)
    if scope == "user" and stored is None:
        stored = email_configs.system_default(session)
    if "host" not in data:
        if stored is None:
            raise NotFoundError("No email configuration yet: save one or give host and port to test.")
        outbound = email_configs.config_outbound(session, settings, stored)
        _check_destination(stored.host, stored.port, outbound)
        return email_configs.stored_settings(settings, secrets, stored, outbound=outbound), stored.from_address
    if "port" not in data:
        raise FieldError("port", "Missing data for required field.")
    outbound = _outbound(scope)
    _check_destination(data["host"], data["port"], outbound)
    password = data.get("password")
    username = data.get("username") or None
    endpoint = {"host": data["host"], "port": data["port"], "username": username}
    if password is None and stored is not None and stored.password_encrypted:
        if bound_secrets.same_endpoint(stored, endpoint):
            password = secrets.decrypt(stored.password_encrypted, what="SMTP password")
    smtp = email_configs.connection_settings(
        settings,
        host=data["host"],
        port=data["port"],
        security=data.get("security", "starttls"),
        username=username,
        password=password,
        outbound=outbound,
    )
    sender = data.get("from_address") or (stored.from_address if stored else None)
    return smtp, sender


# What a non-admin learns from a failed test: whether it worked, not what listens where.
_UNREACHABLE = frozenset({"dns", "refused", "timeout", "network", "disconnected", "tls", "protocol", "not_allowed"})


def _connection_test_key() -> str:
    return f"connection-test:{me().id}"


@blp.route("/test", methods=["POST"])
@login_required()
@limiter.limit(lambda: runtime().settings.connection_test_rate_limit, key_func=_connection_test_key)
@blp.arguments(ScopeArgs, location="query")
@blp.arguments(EmailConfigTestSchema)
@blp.response(200, EmailConfigTestResultSchema)
def test_config(args, data):
    """Connect, secure and log in within BIAPP_SMTP_TIMEOUT_S; optionally send yourself a test message."""
    if args["scope"] == "system":
        _owner("system")
    smtp, sender = _settings_to_test(args["scope"], data)
    send_to = None
    if data["send_test_message"]:
        if not sender:
            raise FieldError("from_address", "A from address is needed to send a test message.")
        send_to = me().email
    result = check_connection(SmtplibTransport(), smtp, sender=sender, send_to=send_to, now=runtime().clock.now())
    if not result.ok and smtp.outbound is not None and result.reason in _UNREACHABLE:
        where = f"{smtp.host}:{smtp.port}"
        return {"ok": False, "reason": "unreachable", "message": f"Could not connect to {where}.", "steps": []}
    return {
        "ok": result.ok,
        "reason": result.reason,
        "message": result.message,
        "steps": list(result.steps),
        "sent_to": result.sent_to,
    }
