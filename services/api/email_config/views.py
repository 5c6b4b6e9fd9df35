"""SMTP settings: your own (default) or the system-wide default (?scope=system, admin)."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared import email_configs
from shared.errors import NotFoundError, PermissionDeniedError
from shared.models import EmailConfig
from shared.models.email import SMTP_SECURITY

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

    def _scope(self, config) -> str:
        return "system" if config.owner_id is None else "user"

    def _has_password(self, config) -> bool:
        return bool(config.password_encrypted)


def _owner(scope: str):
    if scope == "system":
        if me().role != "admin":
            raise PermissionDeniedError("Only an admin can change the system default.")
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
@blp.response(200, EmailConfigSchema)
def get_config(args):
    config = _find(args["scope"])
    if config is None:
        raise NotFoundError("No email configuration yet.")
    return config


@blp.route("", methods=["PUT"])
@login_required()
@blp.arguments(ScopeArgs, location="query")
@blp.arguments(EmailConfigSchema)
@blp.response(200, EmailConfigSchema)
def put_config(args, data):
    owner = _owner(args["scope"])
    session = db()
    config = _find(args["scope"])
    if config is None:
        config = EmailConfig(owner_id=owner, is_system_default=owner is None)
        session.add(config)
    password = data.pop("password", None)
    for key, value in data.items():
        setattr(config, key, value)
    if password is not None:
        config.password_encrypted = runtime().secrets.encrypt(password) if password else None
    session.commit()
    return config


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
