"""Pagination of lists: limit/offset with the total, and keyset cursors for long histories.

Every list takes `limit` and `offset` and answers `{items, total, limit, offset}` (also in X-Pagination).

The history lists (a report's runs, all runs, an alert's evaluations) and the reports list also take a
`cursor`: the `next_cursor` of the previous page. A cursor names the last row seen by its sort key, so the
next page starts right after it through the index, whatever its depth: page 500 costs what page 1 costs,
where an offset makes the database walk and drop every row before it. A page that has more rows after it
carries `next_cursor` in the body and a `Link: <…>; rel="next"` header; the last page has `next_cursor:
null`. With a cursor, `offset` must be 0. A cursor is opaque (URL-safe base64): one that is not a cursor of
this list is a 422 on `cursor`.

Those lists count their `total` up to `TOTAL_CAP` rows: counting every one of 100,000 runs on each request
would cost more than the page itself. `total_exact` says whether `total` is the exact count (true) or only
a lower bound, the cap (false); `count=exact` asks for the exact count at its price.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from shared.errors import FieldError

MAX_LIMIT = 500
# Far beyond any list this application keeps, and far inside a 64-bit OFFSET: a larger one is a 422, not a
# database error.
MAX_OFFSET = 1_000_000_000
# Counting stops here (see the module's note): 1,000 index entries take well under a millisecond; 10,000 took ~7 ms
# on a history of 100,000 runs, half the budget of a page.
TOTAL_CAP = 1_000
MAX_CURSOR_LENGTH = 512
BAD_CURSOR = "not a cursor of this list; start again from the first page"


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class CursorPageArgs(PageArgs):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=MAX_CURSOR_LENGTH),
        metadata={"description": "the `next_cursor` of the previous page (then `offset` must be 0)"},
    )
    count = fields.String(
        load_default="capped",
        validate=validate.OneOf(("capped", "exact")),
        metadata={
            "description": f"`capped` (default): `total` counts at most {TOTAL_CAP:,} rows; "
            "`exact`: count them all (slower on long histories)"
        },
    )

    @validates_schema
    def _cursor_or_offset(self, data, **kwargs):
        if data.get("cursor") and data.get("offset"):
            raise ValidationError("must be 0 (or absent) with a cursor", field_name="offset")


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


@functools.cache
def cursor_page_schema(item: type[Schema]) -> type[Schema]:
    """The body of a cursor-paged list of `item` (one class per item: the OpenAPI document names it once)."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item)),
            "total": fields.Integer(
                metadata={"description": f"matching rows; at most {TOTAL_CAP:,} unless `count=exact`"}
            ),
            "total_exact": fields.Boolean(
                metadata={"description": "false when `total` is only a lower bound (the count stopped at the cap)"}
            ),
            "limit": fields.Integer(),
            "offset": fields.Integer(),
            "next_cursor": fields.String(
                allow_none=True,
                metadata={"description": "pass as `cursor` for the next page; null on the last page"},
            ),
        },
        name=f"{item.__name__.removesuffix('Schema')}CursorPageSchema",
    )


def paginate(session: Session, query: sa.Select, args: dict) -> tuple[dict, dict]:
    total = session.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    items = session.execute(query.limit(args["limit"]).offset(args["offset"])).scalars().all()
    body = {"items": items, "total": total, "limit": args["limit"], "offset": args["offset"]}
    header = {"X-Pagination": json.dumps({"total": total, "limit": args["limit"], "offset": args["offset"]})}
    return body, header


# --- keyset -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    column: sa.ColumnElement
    attribute: str
    descending: bool


def keys_of(order: tuple) -> list[_Key]:
    keys = []
    for clause in order:
        descending = isinstance(clause, sa.UnaryExpression) and clause.modifier is operators.desc_op
        column = clause.element if isinstance(clause, sa.UnaryExpression) else clause
        keys.append(_Key(column, column.key, descending))
    if len({key.descending for key in keys}) != 1:
        raise ValueError("a keyset order runs one way: every key ascending or every key descending")
    return keys


def _encode_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex
    return value


def _decode_value(column: sa.ColumnElement, value):
    kind = column.type
    wanted = (kind.impl_instance if isinstance(kind, TypeDecorator) else kind).python_type
    if wanted is datetime:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(value)
        return moment
    if wanted is uuid.UUID:
        if not isinstance(value, str):
            raise ValueError(value)
        return uuid.UUID(hex=value)
    if wanted is str:
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(value)
        return value
    if wanted is int:
        if type(value) is not int:
            raise ValueError(value)
        return value
    raise ValueError(value)


def encode_cursor(keys: list[_Key], row) -> str:
    raw = json.dumps([_encode_value(getattr(row, key.attribute)) for key in keys], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(keys: list[_Key], cursor: str) -> list:
    """The key values a cursor names; anything else (garbled, tampered, another list's) is a 422 on `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode())
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError(cursor)
        return [_decode_value(key.column, value) for key, value in zip(keys, values, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError, RecursionError):
        raise FieldError("cursor", BAD_CURSOR) from None


def _after(keys: list[_Key], values: list) -> sa.ColumnElement:
    """Rows strictly after the cursor in the list's order, as one row comparison the index answers."""
    if len(keys) == 1:
        left, right = keys[0].column, values[0]
    else:
        left, right = sa.tuple_(*(key.column for key in keys)), sa.tuple_(*values)
    return left < right if keys[0].descending else left > right


def _next_link(cursor: str) -> str:
    query = [(name, value) for name, value in request.args.items(multi=True) if name not in ("cursor", "offset")]
    query.append(("cursor", cursor))
    return f'<{request.base_url}?{urlencode(query)}>; rel="next"'


TOTAL = "page_total"  # the label of the count folded into a page's statement
PAGE = "page"  # the name of the page's rows as `decorate` sees them


def _ordered(columns, keys: list[_Key]) -> list:
    return [columns[key.attribute].desc() if key.descending else columns[key.attribute].asc() for key in keys]


def keyset_paginate(
    session: Session,
    query: sa.Select,
    args: dict,
    *order,
    rows: bool = False,
    decorate: Callable[[sa.Subquery], sa.Select] | None = None,
    on_empty: Callable[[], None] | None = None,
) -> tuple[dict, dict]:
    """One page of `query` in `order` (unique: end with the id), by cursor or by offset.

    Items are the query's entities, or with `rows=True` its result rows (a select of columns, which skips
    the ORM's per-object cost on long lists).

    One statement: the page's rows with the capped count beside them (evaluated once). `decorate(page)`
    may add columns to each row of the page (its children as JSON, say): it gets the page as a subquery,
    already limited, and returns the select to run, so what it adds is computed for the page's rows only,
    never for rows an offset skips. A page with no rows runs `on_empty` (which may raise: the list's
    owner is not visible) and, beyond the first page, a count of its own.
    """
    keys = keys_of(order)
    limit, offset = args["limit"], args["offset"]
    if args.get("count") == "exact":
        counted = query.order_by(None).with_only_columns(*(key.column for key in keys))
    else:
        # In the list's order, so the count walks the same index as the page, and stops at the cap.
        counted = query.order_by(None).order_by(*order).with_only_columns(*(key.column for key in keys))
        counted = counted.limit(TOTAL_CAP + 1)
    count = sa.select(sa.func.count()).select_from(counted.subquery())

    page = query.order_by(None).order_by(*order)
    if args.get("cursor"):
        page = page.where(_after(keys, decode_cursor(keys, args["cursor"])))
    elif offset:
        page = page.offset(offset)
    page = page.limit(limit + 1)
    if decorate is not None:
        inner = page.subquery(PAGE)
        page = decorate(inner).order_by(*_ordered(inner.c, keys))
    page = page.add_columns(count.scalar_subquery().label(TOTAL))
    found = session.execute(page).all()
    if found:
        total = found[0]._mapping[TOTAL]
    else:
        if on_empty is not None:
            on_empty()
        first = not args.get("cursor") and not offset
        total = 0 if first else session.execute(count).scalar_one()
    if not rows:
        found = [row[0] for row in found]
    return page_of(found, total, args, keys)


def page_of(found: list, total: int, args: dict, keys: list[_Key]) -> tuple[dict, dict]:
    """The body and paging headers of a page from its rows (up to limit + 1: one more says there is a next
    page) and its count (capped, unless `count=exact`)."""
    limit, offset = args["limit"], args["offset"]
    exact = args.get("count") == "exact" or total <= TOTAL_CAP
    total = min(total, TOTAL_CAP) if not exact else total

    items, more = found[:limit], len(found) > limit
    next_cursor = encode_cursor(keys, items[-1]) if more and items else None

    body = {
        "items": items,
        "total": total,
        "total_exact": exact,
        "limit": limit,
        "offset": offset,
        "next_cursor": next_cursor,
    }
    summary = {"total": total, "total_exact": exact, "limit": limit, "offset": offset, "next_cursor": next_cursor}
    headers = {"X-Pagination": json.dumps(summary)}
    if next_cursor:
        headers["Link"] = _next_link(next_cursor)
    return body, headers
