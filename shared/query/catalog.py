"""Rules of the semantic catalog: what a dimension and a measure may say.

An entity maps one table or view of a data source to business names. Names are
what saved queries refer to; columns are what the compiler quotes into SQL, and
they must exist in the source (checked against introspection on save).
"""

from __future__ import annotations

import re

from shared import formats
from shared.query.columns import COLUMN_TYPES

AGGREGATIONS = ("sum", "count", "count_distinct", "avg", "min", "max")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def measure_type(measure: dict) -> str:
    """The type of a measure's values: counts are integers, averages decimals, else as declared."""
    if measure["aggregation"] in ("count", "count_distinct"):
        return "integer"
    if measure["aggregation"] == "avg":
        return "decimal"
    return measure.get("type") or "decimal"


def check_entity(dimensions: list[dict], measures: list[dict]) -> dict[str, list[str]]:
    """Field errors of an entity's dimensions and measures ({} when it is valid)."""
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()

    def problem(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    for kind, items in (("dimensions", dimensions), ("measures", measures)):
        for index, item in enumerate(items):
            path = f"{kind}.{index}"
            name = item.get("name")
            if not isinstance(name, str) or not NAME.match(name):
                problem(f"{path}.name", "must start with a letter or _ and hold only letters, digits and _")
            elif name in seen:
                problem(f"{path}.name", f"{name!r} is already used by another dimension or measure")
            else:
                seen.add(name)
            column = item.get("column")
            star_count = kind == "measures" and item.get("aggregation") == "count" and column in (None, "*")
            if not star_count and (not isinstance(column, str) or not column or len(column) > 255):
                problem(f"{path}.column", "is required")
            if kind == "dimensions" and item.get("type") not in COLUMN_TYPES:
                problem(f"{path}.type", f"must be one of {', '.join(COLUMN_TYPES)}")
            numeric = kind == "measures" or item.get("type") in ("integer", "decimal")
            if numeric and item.get("format") is not None:
                try:
                    formats.parse_format(item.get("format"))
                except ValueError as exc:
                    problem(f"{path}.format", str(exc))
            if kind == "measures":
                if item.get("aggregation") not in AGGREGATIONS:
                    problem(f"{path}.aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
                if item.get("type") not in (None, "integer", "decimal", "date", "datetime"):
                    problem(f"{path}.type", "must be integer, decimal, date or datetime")
    if not dimensions and not measures:
        problem("dimensions", "an entity needs at least one dimension or measure")
    return errors


def referenced_columns(dimensions: list[dict], measures: list[dict]) -> dict[str, str]:
    """Field path → column name, for every column an entity reads."""
    columns = {f"dimensions.{i}.column": d["column"] for i, d in enumerate(dimensions)}
    for i, m in enumerate(measures):
        if m.get("column") not in (None, "*"):
            columns[f"measures.{i}.column"] = m["column"]
    return columns
