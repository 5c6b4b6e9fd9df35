"""Saved queries: the semantic form (any role, over entities it can see) and raw SQL (analysts, admins).

A semantic query is checked against its entity on save; raw SQL must pass the
guard (exactly one read-only SELECT) and is refused with a 422 that says why.
`POST …/preview` runs the query through the same engine as reports, capped at a
few rows.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from marshmallow import Schema, ValidationError, fields, pre_dump, validate, validates_schema

from services.api.data_sources.access import source_engines
from services.api.pagination import PageArgs, page_schema, paginate
from services.api.parsing import Blueprint
from services.api.patching import patch_schema, patched
from services.api.runtime import close_db, db, runtime
from services.api.security import get_owned, login_required, me, only_visible, visible_to
from shared.errors import FieldError, PermissionDeniedError, QueryRejectedError, ValidationFailedError
from shared.models import DataSource, SavedQuery, SemanticEntity
from shared.previews import ProcessGate, preview_slot
from shared.query.compiler import check_definition
from shared.query.engine import prepare, stream_prepared
from shared.query.sqlguard import check_select

blp = Blueprint("saved_queries", __name__, url_prefix="/api/saved-queries", description="Saved queries")

SQL_ROLES = ("admin", "analyst")
PREVIEW_DEFAULT_ROWS = 100
PREVIEW_MAX_ROWS = 500


class FilterSchema(Schema):
    field = fields.String(required=True, validate=validate.Length(min=1, max=63))
    op = fields.String(required=True)
    value = fields.Raw(allow_none=True, load_default=None)


class OrderSchema(Schema):
    field = fields.String(required=True, validate=validate.Length(min=1, max=63))
    direction = fields.String(load_default="asc", validate=validate.OneOf(("asc", "desc")))


class SavedQuerySchema(Schema):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, load_default=None)
    kind = fields.String(dump_only=True)
    entity_id = fields.UUID(allow_none=True, load_default=None)
    dimensions = fields.List(fields.String(), load_default=list)
    measures = fields.List(fields.String(), load_default=list)
    filters = fields.List(fields.Nested(FilterSchema), load_default=list, validate=validate.Length(max=100))
    order_by = fields.List(fields.Nested(OrderSchema), load_default=list, validate=validate.Length(max=20))
    limit = fields.Integer(allow_none=True, load_default=None)
    data_source_id = fields.UUID(allow_none=True, load_default=None)
    sql = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=100_000))
    shared = fields.Boolean(load_default=False)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @validates_schema
    def _one_form(self, data, **kwargs):
        semantic = data.get("entity_id") is not None
        raw = data.get("sql") is not None or data.get("data_source_id") is not None
        if semantic == raw:
            raise ValidationError("give either entity_id (semantic) or data_source_id and sql (raw SQL)", "entity_id")
        if raw and not (data.get("sql") and data.get("data_source_id")):
            raise ValidationError("raw SQL queries need both data_source_id and sql", "sql")

    @pre_dump
    def _flatten(self, query: SavedQuery, **kwargs):
        definition = query.definition or {}
        return {
            **{c: getattr(query, c) for c in ("id", "owner_id", "name", "description", "kind", "shared")},
            **{c: getattr(query, c) for c in ("entity_id", "data_source_id", "sql", "created_at", "updated_at")},
            **{k: definition.get(k, [] if k != "limit" else None) for k in DEFINITION_KEYS},
        }


DEFINITION_KEYS = ("dimensions", "measures", "filters", "order_by", "limit")


class PreviewArgs(Schema):
    timezone = fields.String(load_default="UTC", validate=validate.Length(min=1, max=64))
    limit = fields.Integer(load_default=PREVIEW_DEFAULT_ROWS, validate=validate.Range(min=1, max=PREVIEW_MAX_ROWS))


class PreviewColumnSchema(Schema):
    name = fields.String()
    type = fields.String()
    label = fields.String(allow_none=True)
    format = fields.String(allow_none=True)


class PreviewSchema(Schema):
    columns = fields.List(fields.Nested(PreviewColumnSchema))
    rows = fields.List(fields.List(fields.Raw()))
    row_count = fields.Integer()
    truncated = fields.Boolean()


def _apply(query: SavedQuery, data: dict) -> None:
    user = me()
    session = db()
    common = {k: data[k] for k in ("name", "description", "shared")}
    if data.get("entity_id") is not None:
        entity = session.get(SemanticEntity, data["entity_id"])
        if entity is None or not visible_to(user, entity.owner_id, entity.shared):
            raise FieldError("entity_id", "no such semantic entity")
        definition = check_definition(entity, {k: data[k] for k in DEFINITION_KEYS}, now=runtime().clock.now())
        query.kind, query.entity_id, query.definition = "semantic", entity.id, definition
        query.data_source_id, query.sql = None, None
    else:
        if user.role not in SQL_ROLES:
            raise PermissionDeniedError("Raw SQL queries need the analyst or admin role.")
        source = session.get(DataSource, data["data_source_id"])
        if source is None:
            raise FieldError("data_source_id", "no such data source")
        try:
            check_select(data["sql"], source.kind)
        except QueryRejectedError as exc:
            raise ValidationFailedError(exc.message, errors={"sql": [exc.message]}) from None
        query.kind, query.entity_id, query.definition = "sql", None, {}
        query.data_source_id, query.sql = source.id, data["sql"]
    for key, value in common.items():
        setattr(query, key, value)


def _writable(query_id) -> SavedQuery:
    query = get_owned(SavedQuery, query_id, writable=True, what="saved query")
    if query.kind == "sql" and me().role not in SQL_ROLES:
        raise PermissionDeniedError("Raw SQL queries need the analyst or admin role.")
    return query


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(SavedQuerySchema))
def list_queries(args):
    query = sa.select(SavedQuery).order_by(SavedQuery.name, SavedQuery.id)
    query = only_visible(query, SavedQuery)
    body, headers = paginate(db(), query, args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required()
@blp.arguments(SavedQuerySchema)
@blp.response(201, SavedQuerySchema)
def create_query(data):
    query = SavedQuery(owner_id=me().id)
    _apply(query, data)
    session = db()
    session.add(query)
    session.commit()
    return query


@blp.route("/<uuid:query_id>", methods=["GET"])
@login_required()
@blp.response(200, SavedQuerySchema)
def read_query(query_id):
    return get_owned(SavedQuery, query_id, what="saved query")


@blp.route("/<uuid:query_id>", methods=["PUT"])
@login_required()
@blp.arguments(SavedQuerySchema)
@blp.response(200, SavedQuerySchema)
def update_query(data, query_id):
    query = _writable(query_id)
    _apply(query, data)
    db().commit()
    return query


@blp.route("/<uuid:query_id>", methods=["PATCH"])
@login_required()
@blp.arguments(patch_schema(SavedQuerySchema))
@blp.response(200, SavedQuerySchema)
def patch_query(patch, query_id):
    """Change only the fields given, by PUT's rules.

    Switching between the semantic and the raw SQL form sets the other form's fields to null.
    """
    query = _writable(query_id)
    _apply(query, patched(SavedQuerySchema(), query, patch))
    db().commit()
    return query


@blp.route("/<uuid:query_id>", methods=["DELETE"])
@login_required()
@blp.response(204)
def delete_query(query_id):
    session = db()
    session.delete(_writable(query_id))
    session.commit()


def _json_value(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)  # exact; a float would round
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _gate() -> ProcessGate:
    gate = current_app.extensions.get("biapp.preview_gate")
    if gate is None:
        gate = current_app.extensions.setdefault(
            "biapp.preview_gate", ProcessGate(runtime().settings.previews_per_process)
        )
    return gate


@blp.route("/<uuid:query_id>/preview", methods=["POST"])
@login_required()
@blp.arguments(PreviewArgs, location="query")
@blp.response(200, PreviewSchema)
def preview_query(args, query_id):
    """The first rows of the query as reports would see them (a few rows only).

    Runs under BIAPP_PREVIEW_TIMEOUT_S (or the report limit if smaller), holds no application-database
    connection while the query runs, and a user may have BIAPP_PREVIEWS_PER_USER running at once (then 429).
    """
    query = get_owned(SavedQuery, query_id, what="saved query")
    rt = runtime()
    settings = rt.settings
    prepared = prepare(db(), query, engines=source_engines(), timezone=args["timezone"], now=rt.clock.now())
    user_id = me().id
    close_db()  # the query may run for a while: give the application connection back first
    timeout = min(
        (settings.preview_timeout_s, "BIAPP_PREVIEW_TIMEOUT_S"), (settings.query_timeout_s, "BIAPP_QUERY_TIMEOUT_S")
    )
    slots = {"limit": settings.previews_per_user, "ttl_s": timeout[0], "now": rt.clock.now()}
    with (
        _gate().enter(),
        preview_slot(rt.session_factory, user_id, **slots),
        stream_prepared(prepared, settings=settings, max_rows=args["limit"], timeout=timeout) as stream,
    ):
        rows = [[_json_value(v) for v in row] for row in stream]
        columns = [{"name": c.name, "type": c.type, "label": c.label, "format": c.format} for c in stream.columns]
    return {"columns": columns, "rows": rows, "row_count": stream.row_count, "truncated": stream.truncated}
