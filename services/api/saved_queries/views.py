"""Saved queries: the raw SQL form (analysts and admins)."""

from __future__ import annotations

import sqlalchemy as sa
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from services.api.pagination import PageArgs, page_schema, paginate
from services.api.runtime import db
from services.api.security import get_owned, login_required, me
from shared.errors import FieldError
from shared.models import DataSource, SavedQuery

blp = Blueprint("saved_queries", __name__, url_prefix="/api/saved-queries", description="Saved queries")


class SavedQuerySchema(Schema):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True)
    kind = fields.String(dump_only=True)
    data_source_id = fields.UUID(required=True)
    sql = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    shared = fields.Boolean(load_default=False)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


def _apply(query: SavedQuery, data: dict) -> None:
    if db().get(DataSource, data["data_source_id"]) is None:
        raise FieldError("data_source_id", "no such data source")
    query.kind = "sql"
    for key, value in data.items():
        setattr(query, key, value)


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(SavedQuerySchema))
def list_queries(args):
    user = me()
    query = sa.select(SavedQuery).order_by(SavedQuery.name)
    if user.role != "admin":
        query = query.where(sa.or_(SavedQuery.owner_id == user.id, SavedQuery.shared.is_(True)))
    body, headers = paginate(db(), query, args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required("admin", "analyst")
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
@login_required("admin", "analyst")
@blp.arguments(SavedQuerySchema)
@blp.response(200, SavedQuerySchema)
def update_query(data, query_id):
    query = get_owned(SavedQuery, query_id, writable=True, what="saved query")
    _apply(query, data)
    db().commit()
    return query


@blp.route("/<uuid:query_id>", methods=["DELETE"])
@login_required("admin", "analyst")
@blp.response(204)
def delete_query(query_id):
    session = db()
    session.delete(get_owned(SavedQuery, query_id, writable=True, what="saved query"))
    session.commit()
