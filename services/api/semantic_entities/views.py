"""The semantic catalog: entities over one table or view, with dimensions and measures.

Creating or changing an entity checks its columns exist in the source, so saved
queries built on it fail at save time, not at 6 a.m. in a scheduled run.
"""

from __future__ import annotations

import sqlalchemy as sa
from marshmallow import Schema, fields, validate

from services.api.data_sources.access import source_engines
from services.api.pagination import PageArgs, page_schema, paginate
from services.api.parsing import Blueprint
from services.api.runtime import db
from services.api.security import get_owned, login_required, me, only_visible
from shared.errors import ConflictError, FieldError, ValidationFailedError
from shared.models import DataSource, SavedQuery, SemanticEntity
from shared.query import introspect
from shared.query.catalog import AGGREGATIONS, check_entity
from shared.query.columns import COLUMN_TYPES

blp = Blueprint("semantic_entities", __name__, url_prefix="/api/semantic-entities", description="Semantic catalog")


class DimensionSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=63))
    column = fields.String(required=True, validate=validate.Length(min=1, max=255))
    type = fields.String(required=True, validate=validate.OneOf(COLUMN_TYPES))
    label = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    format = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=100))
    description = fields.String(allow_none=True, load_default=None)


class MeasureSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=63))
    column = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=255))
    aggregation = fields.String(required=True, validate=validate.OneOf(AGGREGATIONS))
    type = fields.String(
        allow_none=True, load_default=None, validate=validate.OneOf(("integer", "decimal", "date", "datetime"))
    )
    label = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    format = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=100))
    description = fields.String(allow_none=True, load_default=None)


class EntitySchema(Schema):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, load_default=None)
    data_source_id = fields.UUID(required=True)
    table = fields.String(required=True, attribute="table_name", validate=validate.Length(min=1, max=255))
    dimensions = fields.List(fields.Nested(DimensionSchema), load_default=list, validate=validate.Length(max=500))
    measures = fields.List(fields.Nested(MeasureSchema), load_default=list, validate=validate.Length(max=500))
    shared = fields.Boolean(load_default=False)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


def _apply(entity: SemanticEntity, data: dict) -> None:
    session = db()
    source = session.get(DataSource, data["data_source_id"])
    if source is None:
        raise FieldError("data_source_id", "no such data source")
    errors = check_entity(data["dimensions"], data["measures"])
    if errors:
        raise ValidationFailedError("The entity's dimensions or measures are invalid.", errors=errors)
    introspect.check_entity_columns(
        source_engines().get(source), data["table_name"], data["dimensions"], data["measures"]
    )
    for key, value in data.items():
        setattr(entity, key, value)


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(EntitySchema))
def list_entities(args):
    query = sa.select(SemanticEntity).order_by(SemanticEntity.name, SemanticEntity.id)
    query = only_visible(query, SemanticEntity)
    body, headers = paginate(db(), query, args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required("admin", "analyst")
@blp.arguments(EntitySchema)
@blp.response(201, EntitySchema)
def create_entity(data):
    entity = SemanticEntity(owner_id=me().id)
    _apply(entity, data)
    session = db()
    session.add(entity)
    session.commit()
    return entity


@blp.route("/<uuid:entity_id>", methods=["GET"])
@login_required()
@blp.response(200, EntitySchema)
def read_entity(entity_id):
    return get_owned(SemanticEntity, entity_id, what="semantic entity")


@blp.route("/<uuid:entity_id>", methods=["PUT"])
@login_required("admin", "analyst")
@blp.arguments(EntitySchema)
@blp.response(200, EntitySchema)
def update_entity(data, entity_id):
    entity = get_owned(SemanticEntity, entity_id, writable=True, what="semantic entity")
    _apply(entity, data)
    db().commit()
    return entity


@blp.route("/<uuid:entity_id>", methods=["DELETE"])
@login_required("admin", "analyst")
@blp.response(204)
def delete_entity(entity_id):
    session = db()
    entity = get_owned(SemanticEntity, entity_id, writable=True, what="semantic entity")
    if session.execute(sa.select(SavedQuery.id).where(SavedQuery.entity_id == entity.id).limit(1)).first():
        raise ConflictError("Saved queries still use this entity; delete them first.")
    session.delete(entity)
    session.commit()
