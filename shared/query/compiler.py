"""Semantic queries → SQLAlchemy Core SELECT statements.

Identifiers come only from the catalog (always quoted, never from the request);
every filter value is a bound parameter. `check_definition()` validates a saved
query against its entity and normalises it; `compile_semantic()` builds the
statement at run time, when relative dates are resolved in the report's zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.elements import quoted_name

from shared.errors import QueryRejectedError, ValidationFailedError
from shared.query import relative_dates
from shared.query.catalog import measure_type
from shared.query.columns import ColumnInfo

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "between",
    "contains",
    "starts_with",
    "is_null",
    "is_not_null",
)
MAX_IN_VALUES = 1000
MAX_LIMIT = 50_000_000
SA_TYPES = {
    "string": sa.String(),
    "integer": sa.BigInteger(),
    "decimal": sa.Numeric(),
    "date": sa.Date(),
    "datetime": sa.DateTime(timezone=True),
    "boolean": sa.Boolean(),
}


@dataclass(frozen=True)
class CompiledQuery:
    statement: sa.Select
    columns: list[ColumnInfo]


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_field.setdefault(path, []).append(message)


def _q(name: str) -> quoted_name:
    return quoted_name(name, quote=True)


def entity_table(table_name: str, columns: set[str]) -> sa.TableClause:
    schema, _, table = table_name.rpartition(".")
    return sa.table(_q(table), *(sa.column(_q(c)) for c in sorted(columns)), schema=_q(schema) if schema else None)


# --- values -------------------------------------------------------------------------------


def _scalar(value: object, kind: str, zone: ZoneInfo) -> object:
    """A filter value as the Python type of its field; ValueError when it does not fit."""
    if value is None:
        raise ValueError("a value is required (use is_null to match empty cells)")
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be text")
        return str(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError("must be a whole number")
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("must be a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("must be a number") from None
        if not number.is_finite():
            raise ValueError("must be a finite number")
        return number
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise ValueError("must be a date (YYYY-MM-DD) or a relative period")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD) or a relative period") from None
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time or a relative period")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time or a relative period") from None
        # A wall-clock time without an offset means the report's zone.
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    raise ValueError(f"unsupported type {kind}")


def _bound(value: object, kind: str) -> sa.BindParameter:
    return sa.literal(value, SA_TYPES[kind])


def _period(token: str, kind: str, zone: ZoneInfo, now: datetime) -> tuple[object, object]:
    period = relative_dates.resolve(token, now=now, zone=zone)
    if kind == "date":
        return period.start, period.end
    return period.datetimes(zone)


def _condition(expr, kind: str, op: str, value: object, zone: ZoneInfo, now: datetime):
    """One filter as a SQL condition; raises ValueError with a user-facing reason."""
    if op == "is_null":
        return expr.is_(None)
    if op == "is_not_null":
        return expr.is_not(None)
    temporal = kind in ("date", "datetime")
    if op in ("contains", "starts_with"):
        if kind != "string":
            raise ValueError(f"{op} works on text fields only")
        text = _scalar(value, kind, zone)
        # autoescape: % and _ in the value match themselves, not any text.
        return expr.contains(text, autoescape=True) if op == "contains" else expr.startswith(text, autoescape=True)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{op} needs a non-empty list")
        if len(value) > MAX_IN_VALUES:
            raise ValueError(f"{op} takes at most {MAX_IN_VALUES} values")
        if temporal and any(relative_dates.is_relative(v) for v in value):
            raise ValueError("relative periods work with eq, ne, gt, gte, lt, lte and between")
        params = [_bound(_scalar(v, kind, zone), kind) for v in value]
        return expr.in_(params) if op == "in" else expr.not_in(params)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("between needs a list of two values [low, high]")
        low, high = value
        if temporal and relative_dates.is_relative(low):
            low_bound = _bound(_period(low, kind, zone, now)[0], kind)
        else:
            low_bound = _bound(_scalar(low, kind, zone), kind)
        if temporal and relative_dates.is_relative(high):
            return sa.and_(expr >= low_bound, expr < _bound(_period(high, kind, zone, now)[1], kind))
        return expr.between(low_bound, _bound(_scalar(high, kind, zone), kind))
    if temporal and relative_dates.is_relative(value):
        start, end = (_bound(v, kind) for v in _period(value, kind, zone, now))
        return {
            "eq": lambda: sa.and_(expr >= start, expr < end),
            "ne": lambda: sa.or_(expr < start, expr >= end),
            "gt": lambda: expr >= end,
            "gte": lambda: expr >= start,
            "lt": lambda: expr < start,
            "lte": lambda: expr < end,
        }[op]()
    if kind == "boolean" and op not in ("eq", "ne"):
        raise ValueError("true/false fields take eq or ne")
    bound = _bound(_scalar(value, kind, zone), kind)
    return {
        "eq": lambda: expr == bound,
        "ne": lambda: expr != bound,
        "gt": lambda: expr > bound,
        "gte": lambda: expr >= bound,
        "lt": lambda: expr < bound,
        "lte": lambda: expr <= bound,
    }[op]()


# --- the statement ------------------------------------------------------------------------


def _aggregate(measure: dict, table: sa.TableClause):
    column = measure.get("column")
    if measure["aggregation"] == "count" and column in (None, "*"):
        return sa.func.count()
    col = table.c[column]
    return {
        "sum": lambda: sa.func.sum(col),
        "count": lambda: sa.func.count(col),
        "count_distinct": lambda: sa.func.count(sa.distinct(col)),
        "avg": lambda: sa.func.avg(col),
        "min": lambda: sa.func.min(col),
        "max": lambda: sa.func.max(col),
    }[measure["aggregation"]]()


def _build(entity, definition: dict, zone: ZoneInfo, now: datetime, errors: _Errors) -> CompiledQuery | None:
    dims = {d["name"]: d for d in entity.dimensions or []}
    measures = {m["name"]: m for m in entity.measures or []}
    columns = {d["column"] for d in dims.values()} | {
        m["column"] for m in measures.values() if m.get("column") not in (None, "*")
    }
    table = entity_table(entity.table_name, columns)

    chosen_dims = definition.get("dimensions") or []
    chosen_measures = definition.get("measures") or []
    if not isinstance(chosen_dims, list) or not isinstance(chosen_measures, list):
        errors.add("dimensions", "dimensions and measures are lists of names")
        return None
    if not chosen_dims and not chosen_measures:
        errors.add("dimensions", "choose at least one dimension or measure")
    for path, names, known in (("dimensions", chosen_dims, dims), ("measures", chosen_measures, measures)):
        for index, name in enumerate(names):
            if not isinstance(name, str) or name not in known:
                errors.add(f"{path}.{index}", f"{name!r} is not a {path[:-1]} of entity {entity.name!r}")
        if len(set(map(str, names))) != len(names):
            errors.add(path, "each name may appear once")

    selected: dict[str, object] = {}
    infos: list[ColumnInfo] = []
    for name in chosen_dims:
        if isinstance(name, str) and name in dims:
            d = dims[name]
            selected[name] = table.c[d["column"]]
            infos.append(ColumnInfo(name, d["type"], d.get("label") or name, d.get("format")))
    for name in chosen_measures:
        if isinstance(name, str) and name in measures and name not in selected:
            m = measures[name]
            selected[name] = _aggregate(m, table)
            infos.append(ColumnInfo(name, measure_type(m), m.get("label") or name, m.get("format")))

    where, having = [], []
    filters = definition.get("filters") or []
    if not isinstance(filters, list):
        errors.add("filters", "must be a list of {field, op, value}")
        filters = []
    for index, spec in enumerate(filters):
        path = f"filters.{index}"
        if not isinstance(spec, dict):
            errors.add(path, "must be an object {field, op, value}")
            continue
        field, op = spec.get("field"), spec.get("op")
        if op not in OPERATORS:
            errors.add(f"{path}.op", f"must be one of {', '.join(OPERATORS)}")
            continue
        if isinstance(field, str) and field in dims:
            expr, kind, target = table.c[dims[field]["column"]], dims[field]["type"], where
        elif isinstance(field, str) and field in measures:
            expr, kind, target = _aggregate(measures[field], table), measure_type(measures[field]), having
        else:
            errors.add(f"{path}.field", f"{field!r} is not a field of entity {entity.name!r}")
            continue
        try:
            target.append(_condition(expr, kind, op, spec.get("value"), zone, now))
        except ValueError as exc:
            errors.add(f"{path}.value", str(exc))

    order = []
    order_by = definition.get("order_by") or []
    for index, spec in enumerate(order_by if isinstance(order_by, list) else [None]):
        path = f"order_by.{index}"
        if not isinstance(spec, dict) or spec.get("field") not in selected:
            errors.add(f"{path}.field", "must name a chosen dimension or measure")
            continue
        direction = spec.get("direction", "asc")
        if direction not in ("asc", "desc"):
            errors.add(f"{path}.direction", "must be asc or desc")
            continue
        expr = selected[spec["field"]]
        order.append(expr.desc() if direction == "desc" else expr.asc())

    limit = definition.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT):
        errors.add("limit", f"must be a whole number from 1 to {MAX_LIMIT}")

    if errors.by_field:
        return None
    statement = sa.select(*(expr.label(name) for name, expr in selected.items())).select_from(table)
    if where:
        statement = statement.where(*where)
    if chosen_measures and chosen_dims:
        statement = statement.group_by(*(selected[name] for name in chosen_dims))
    if having:
        statement = statement.having(*having)
    if order:
        statement = statement.order_by(*order)
    if limit is not None:
        statement = statement.limit(limit)
    return CompiledQuery(statement, infos)


def check_definition(entity, definition: dict, *, now: datetime, zone: str = "UTC") -> dict:
    """Validate a semantic query against its entity; returns the normalised definition or raises 422."""
    errors = _Errors()
    _build(entity, definition, ZoneInfo(zone), now, errors)
    if errors.by_field:
        raise ValidationFailedError("The query does not fit its entity.", errors=errors.by_field)
    return {
        "dimensions": list(definition.get("dimensions") or []),
        "measures": list(definition.get("measures") or []),
        "filters": list(definition.get("filters") or []),
        "order_by": [
            {"field": o["field"], "direction": o.get("direction", "asc")} for o in definition.get("order_by") or []
        ],
        "limit": definition.get("limit"),
    }


def compile_semantic(entity, definition: dict, *, zone: str, now: datetime) -> CompiledQuery:
    """Build the SELECT for a run; a definition the entity no longer fits is a permanent rejection."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    errors = _Errors()
    compiled = _build(entity, definition, ZoneInfo(zone), now, errors)
    if compiled is None:
        detail = "; ".join(f"{path}: {', '.join(msgs)}" for path, msgs in sorted(errors.by_field.items()))
        raise QueryRejectedError(f"The saved query no longer fits entity {entity.name!r}: {detail}")
    return compiled
