"""Data sources (admin): where saved queries read from. Passwords are write-only."""

from __future__ import annotations

import sqlalchemy as sa
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.api.pagination import PageArgs, page_schema, paginate
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared.errors import NotFoundError
from shared.models import DataSource
from shared.models.catalog import DATA_SOURCE_KINDS
from shared.query.sources import resolve_sqlite_path

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
    options = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    def _has_password(self, source) -> bool:
        return bool(source.password_encrypted)

    @validates_schema
    def _fields_for_kind(self, data, **kwargs):
        if data["kind"] == "sqlite":
            if not data.get("path"):
                raise ValidationError("required for sqlite sources", field_name="path")
        else:
            for name in ("host", "database"):
                if not data.get(name):
                    raise ValidationError(f"required for {data['kind']} sources", field_name=name)


def _apply(source: DataSource, data: dict) -> None:
    rt = runtime()
    if data["kind"] == "sqlite":
        resolve_sqlite_path(rt.settings, data["path"])
    password = data.pop("password", None)
    for key, value in data.items():
        setattr(source, key, value)
    if password is not None:
        source.password_encrypted = rt.secrets.encrypt(password) if password else None
    if source.port is None and source.kind != "sqlite":
        source.port = {"postgresql": 5432, "mysql": 3306}[source.kind]


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
    source = get_source(source_id)
    _apply(source, data)
    db().commit()
    return source


@blp.route("/<uuid:source_id>", methods=["DELETE"])
@login_required("admin")
@blp.response(204)
def delete_source(source_id):
    session = db()
    session.delete(get_source(source_id))
    session.commit()
