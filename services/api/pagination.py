"""limit/offset pagination with the total in the body and in X-Pagination."""

from __future__ import annotations

import json

import sqlalchemy as sa
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

MAX_LIMIT = 500
# Far beyond any list this application keeps, and far inside a 64-bit OFFSET: a larger one is a 422, not a
# database error.
MAX_OFFSET = 1_000_000_000


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


def page_schema(item: type[Schema]) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item)),
            "total": fields.Integer(),
            "limit": fields.Integer(),
            "offset": fields.Integer(),
        },
        name=f"{item.__name__.removesuffix('Schema')}PageSchema",
    )


def paginate(session: Session, query: sa.Select, args: dict) -> tuple[dict, dict]:
    total = session.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    items = session.execute(query.limit(args["limit"]).offset(args["offset"])).scalars().all()
    body = {"items": items, "total": total, "limit": args["limit"], "offset": args["offset"]}
    header = {"X-Pagination": json.dumps({"total": total, "limit": args["limit"], "offset": args["offset"]})}
    return body, header
