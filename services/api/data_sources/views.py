"""Data sources (admin): where saved queries read from. Passwords are write-only.

The password is encrypted with the app's SecretBox on the way in and never leaves
the server again: responses only say `has_password`. A PUT without `password`
keeps the stored one while host, port and user name stay the same (a changed one
clears it); `"password": ""` clears it. A source is vetted when saved and tested
(shared/query/boundaries.py): never the application's own database, never a
superuser or file-reading login.
"""

from __future__ import annotations

import sqlalchemy as sa
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from pymysql.charset import charset_by_name

from services.api.data_sources.access import source_engines
from services.api.pagination import PageArgs, page_schema, paginate
from services.api.parsing import Blueprint, text_problem
from services.api.patching import patch_schema, patched
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared.errors import ConflictError, FieldError, NotFoundError
from shared.models import DataSource, SavedQuery, SemanticEntity
from shared.models.catalog import DATA_SOURCE_KINDS
from shared.query import introspect
from shared.security import bound_secrets


def _known_charset(value: str) -> None:
    if charset_by_name(value) is None:  # PyMySQL fails with an AttributeError on a name it does not know
        raise ValidationError("not a character set the driver knows")


# Connection options that cannot make the server read local files or reach other hosts, and a check of
# the value each takes (a string; one the driver would choke on is a 422 here, not a 500 at connect time).
OPTION_VALUES = {
    "postgresql": {
        "sslmode": validate.OneOf(("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
        "gssencmode": validate.OneOf(("disable", "prefer", "require")),
        "target_session_attrs": validate.OneOf(
            ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
        ),
        "application_name": validate.Length(max=63),
    },
    "mysql": {"charset": _known_charset},
    "sqlite": {},
}
ALLOWED_OPTIONS = {kind: frozenset(values) for kind, values in OPTION_VALUES.items()}

blp = Blueprint("data_sources", __name__, url_prefix="/api/data-sources", description="Data sources (admin)")


class DataSourceSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(DATA_SOURCE_KINDS))
    host = fields.String(allow_none=True, validate=validate.Length(max=255))
    port = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=65535))
    database = fields.String(allow_none=True, validate=validate.Length(max=255))
    username = fields.String(allow_none=True, validate=validate.Length(max=255))
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=1024))
    has_password = fields.Method("_has_password", dump_only=True)
    path = fields.String(allow_none=True, validate=validate.Length(max=1024))
    options = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={
            "description": "driver options; postgresql: sslmode, gssencmode, target_session_attrs, "
            "application_name; mysql: charset; sqlite: none",
            "properties": {
                "sslmode": {"type": "string", "enum": list(OPTION_VALUES["postgresql"]["sslmode"].choices)},
                "gssencmode": {"type": "string", "enum": list(OPTION_VALUES["postgresql"]["gssencmode"].choices)},
                "target_session_attrs": {
                    "type": "string",
                    "enum": list(OPTION_VALUES["postgresql"]["target_session_attrs"].choices),
                },
                "application_name": {"type": "string", "maxLength": 63},
                "charset": {"type": "string", "example": "utf8mb4"},
            },
            "additionalProperties": False,
        },
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    def _has_password(self, source) -> bool:
        return bool(source.password_encrypted)

    @validates_schema
    def _fields_for_kind(self, data, **kwargs):
        allowed = ALLOWED_OPTIONS.get(data["kind"], frozenset())
        unknown = sorted(set(data.get("options") or {}) - allowed)
        if unknown:
            raise ValidationError(
                f"unsupported option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}",
                field_name="options",
            )
        errors = {}
        for name, value in (data.get("options") or {}).items():
            try:
                if not isinstance(value, str):
                    raise ValidationError("must be a string")
                OPTION_VALUES[data["kind"]][name](value)
            except ValidationError as exc:
                errors[f"options.{name}"] = exc.messages
        if errors:
            raise ValidationError(errors)
        if data["kind"] == "sqlite":
            if not data.get("path"):
                raise ValidationError("required for sqlite sources", field_name="path")
        else:
            for name in ("host", "database"):
                if not data.get(name):
                    raise ValidationError(f"required for {data['kind']} sources", field_name=name)
            if not _resolvable_name(data["host"]):
                raise ValidationError("not a valid host name or address", field_name="host")


def _resolvable_name(host: str) -> bool:
    """Whether the resolver can even be asked: "a..b", a 64-character label or a character IDNA refuses
    makes getaddrinfo raise a UnicodeError, not a lookup failure. libpq takes a comma-separated list of hosts,
    and a path (a Unix socket's directory) is not looked up."""
    for part in host.split(","):
        if part.startswith("/"):
            continue
        try:
            part.encode("idna")
        except UnicodeError:
            return False
    return True


class TestResultSchema(Schema):
    ok = fields.Boolean()
    reason = fields.String(allow_none=True)
    elapsed_ms = fields.Integer()
    warning = fields.String(allow_none=True, metadata={"description": "set when the login works but could change data"})


class TableSchema(Schema):
    name = fields.String()
    kind = fields.String()


class TableListSchema(Schema):
    items = fields.List(fields.Nested(TableSchema))


class ColumnSchema(Schema):
    name = fields.String()
    type = fields.String()
    sql_type = fields.String()
    nullable = fields.Boolean()


class ColumnListSchema(Schema):
    items = fields.List(fields.Nested(ColumnSchema))


def _apply(source: DataSource, data: dict) -> None:
    """Apply the fields, then vet the result: a source that must not be used is a 422 and nothing is saved.

    The stored password follows its host: changing host, port or user name without giving it again clears it.
    """
    rt = runtime()
    if data["kind"] == "sqlite":
        data.update(host=None, port=None, database=None, username=None, password="")
    elif data.get("port") is None:
        data["port"] = {"postgresql": 5432, "mysql": 3306}[data["kind"]]
    bound_secrets.apply_secret(source, data, rt.secrets)
    # Refusals (the app's database, a privileged login, a path outside the root) raise here;
    # a server that cannot be reached yet may still be saved: every run checks again.
    introspect.test_connection(source, rt.secrets, rt.settings)


def get_source(source_id) -> DataSource:
    source = db().get(DataSource, source_id)
    if source is None:
        raise NotFoundError("No such data source.")
    return source


@blp.route("", methods=["GET"])
@login_required("admin")
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(DataSourceSchema))
def list_sources(args):
    body, headers = paginate(db(), sa.select(DataSource).order_by(DataSource.name), args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required("admin")
@blp.arguments(DataSourceSchema)
@blp.response(201, DataSourceSchema)
def create_source(data):
    source = DataSource(owner_id=me().id)
    _apply(source, data)
    session = db()
    session.add(source)
    session.commit()
    return source


@blp.route("/<uuid:source_id>", methods=["GET"])
@login_required("admin")
@blp.response(200, DataSourceSchema)
def read_source(source_id):
    return get_source(source_id)


@blp.route("/<uuid:source_id>", methods=["PUT"])
@login_required("admin")
@blp.arguments(DataSourceSchema)
@blp.response(200, DataSourceSchema)
def update_source(data, source_id):
    return _update(get_source(source_id), data)


@blp.route("/<uuid:source_id>", methods=["PATCH"])
@login_required("admin")
@blp.arguments(patch_schema(DataSourceSchema))
@blp.response(200, DataSourceSchema)
def patch_source(patch, source_id):
    """Change only the fields given, by PUT's rules.

    The stored password stays unless host, port or user name change without it.
    """
    source = get_source(source_id)
    return _update(source, patched(DataSourceSchema(), source, patch))


def _update(source: DataSource, data: dict) -> DataSource:
    _apply(source, data)
    db().commit()
    # Pooled connections of the old definition go now, not at the next run.
    source_engines().forget(source.id)
    return source


@blp.route("/<uuid:source_id>", methods=["DELETE"])
@login_required("admin")
@blp.response(204)
def delete_source(source_id):
    session = db()
    source = get_source(source_id)
    for model, what in ((SemanticEntity, "semantic entities"), (SavedQuery, "saved queries")):
        if session.execute(sa.select(model.id).where(model.data_source_id == source.id).limit(1)).first():
            raise ConflictError(f"Data source is still used by {what}; delete or move them first.")
    session.delete(source)
    session.commit()
    source_engines().forget(source_id)


@blp.route("/<uuid:source_id>/test", methods=["POST"])
@login_required("admin")
@blp.response(200, TestResultSchema)
def test_source(source_id):
    """Connect with a short timeout and vet the login.

    `ok: false` comes with a reason (never the password); a superuser or otherwise privileged login, or the
    application's own database, is a 422 that says how to make a read-only login; a login that can write
    passes with a `warning`.
    """
    rt = runtime()
    return introspect.test_connection(get_source(source_id), rt.secrets, rt.settings)


@blp.route("/<uuid:source_id>/tables", methods=["GET"])
@login_required("admin")
@blp.response(200, TableListSchema)
def list_tables(source_id):
    return {"items": introspect.list_tables(source_engines().get(get_source(source_id)))}


@blp.route("/<uuid:source_id>/tables/<path:table>/columns", methods=["GET"])
@login_required("admin")
@blp.response(200, ColumnListSchema)
def list_columns(source_id, table):
    problem = text_problem(table)
    if problem:
        raise FieldError("table", problem)
    return {"items": introspect.list_columns(source_engines().get(get_source(source_id)), table)}
