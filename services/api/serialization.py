"""Faster marshmallow dumps for the schemas of large lists (the reports list answers 50 reports a page).

`FastDump` gives a schema the same output as marshmallow's own `_serialize` while skipping its accessor chain
(Field.get_value -> Schema.get_attribute -> utils.get_value -> hasattr/getattr) for plain attributes of plain
objects and dicts, which was the largest part of dumping a page of ORM objects. Other mappings, dotted
attributes, fields with a dump default and fields that read no attribute (Method, Function) keep marshmallow's
path.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from marshmallow import Schema
from marshmallow.utils import missing


class FastDump(Schema):
    _fast_plan: list[tuple[str, str, Any, bool]] | None = None

    def _plan(self) -> list[tuple[str, str, Any, bool]]:
        """(output key, field name, field, direct): direct ones are read with getattr, the rest as marshmallow does."""
        plan = []
        own_accessor = type(self).get_attribute is Schema.get_attribute
        for name, field in self.dump_fields.items():
            source = field.attribute if field.attribute is not None else name
            direct = (
                own_accessor
                and field._CHECK_ATTRIBUTE
                and field.dump_default is missing
                and isinstance(source, str)
                and "." not in source
            )
            plan.append((field.data_key if field.data_key is not None else name, name, field, direct))
        return plan

    def _serialize(self, obj: Any, *, many: bool = False):
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        is_dict = type(obj) is dict
        if not is_dict and hasattr(obj, "__getitem__"):  # another mapping or a sequence: marshmallow's own rules
            return super()._serialize(obj)
        plan = self._fast_plan
        if plan is None:
            plan = self._fast_plan = self._plan()
        result = self.dict_class()
        for key, name, field, direct in plan:
            if direct:
                source = field.attribute or name
                if is_dict:  # as marshmallow.utils.get_value: the key, else an attribute of that name
                    value = obj[source] if source in obj else getattr(obj, source, missing)
                else:
                    value = getattr(obj, source, missing)
                if value is missing:
                    continue
                result[key] = field._serialize(value, name, obj)
            else:
                value = field.serialize(name, obj, accessor=self.get_attribute)
                if value is not missing:
                    result[key] = value
        return result


def json_response(body: dict, headers: dict | None = None) -> Response:
    """A 200 with a body that is already JSON-ready, encoded by orjson (several times faster than the standard
    encoder on a page of 50 items)."""
    response = Response(orjson.dumps(body), mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


# --- JSON built by PostgreSQL ---------------------------------------------------------------------------
# A list page of runs or evaluations is read as one statement whose rows are each item's JSON, made by the
# database the way the item's schema dumps it (tests compare the two on every kind of item). The SQL is
# text, short, so that the driver keeps the whole page statement in its cache of parsed statements (4 kB).


def iso_sql(column: str) -> str:
    """SQL for a timestamptz as Python's isoformat() writes a UTC datetime (no fraction when it is zero)."""
    return f"""replace(to_char({column} AT TIME ZONE 'UTC','YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),'.000000+','+')"""


def json_object_sql(pairs: dict[str, str]) -> str:
    """json_build_object over (key, SQL expression) pairs; the keys are names of ours, never input."""
    return "json_build_object(" + ",".join(f"'{key}',{value}" for key, value in pairs.items()) + ")"


def json_list_sql(table: str, pairs: dict[str, str], order: str, where: str) -> str:
    """SQL for the JSON array of one object per row of `table` matching `where`, in `order` ([] for none)."""
    return f"coalesce((SELECT json_agg({json_object_sql(pairs)} ORDER BY {order}) FROM {table} WHERE {where}),'[]')"


def delivery_pairs(alias: str, *, smtp_reply: bool) -> dict[str, str]:
    """A delivery as DeliverySchema dumps it (services/api/executions/schemas.py), from the row `alias`."""
    from shared.destinations import ICONS

    channel = f"coalesce(nullif({alias}.channel,''),'email')"
    target = f"coalesce(nullif({alias}.target,''),{alias}.recipient)"
    reply = f"{alias}.smtp_reply" if smtp_reply else "NULL"
    pairs = {
        "destination_id": f"{alias}.destination_id::text",
        "kind": f"{alias}.channel",
        "icon": f"CASE {channel} " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in ICONS.items()) + " ELSE 'mail' END",
        "target": target,
        "recipient": f"CASE WHEN {channel}='email' THEN {alias}.recipient ELSE {target} END",
        "role": f"{alias}.kind",
        "status": f"{alias}.status",
        "attempts": f"{alias}.attempts",
        "error": f"{alias}.error",
        "answer": f"coalesce(nullif({alias}.answer,''),{reply})",
        "smtp_reply": reply,
        "next_attempt_at": iso_sql(f"{alias}.next_attempt_at"),
        "sent_at": iso_sql(f"{alias}.sent_at"),
    }
    if not smtp_reply:
        del pairs["smtp_reply"]
    return pairs
