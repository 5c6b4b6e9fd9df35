"""PATCH: a partial body is the PUT of the object with only the given fields changed.

The object's current state, in the shape its PUT schema takes, is overlaid with the body's top-level
fields, loaded by that same schema and applied by the same code as PUT. So a PATCH validates, refuses
unknown fields and has the side effects a PUT has (pausing a report cancels its runs not yet started).
A nested object given (`schedule`, `options`, `condition`) replaces the stored one whole, so a switch
from `cron` to `daily` cannot keep a stale `cron` beside it. Secrets are write-only and so never part of
the current state: like a PUT without them, a PATCH keeps the stored ones (unless the host they belong
to changes).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from marshmallow import Schema, ValidationError, fields, missing

from services.api.errors import invalid_fields_message
from services.api.parsing import json_safe_messages
from shared.errors import ValidationFailedError

# Reports and alerts: `destinations` is the whole list, `recipients`/`cc` its email part.
DESTINATION_FIELDS = ("destinations", "recipients", "cc")


def _input_names(schema: Schema) -> dict[str, fields.Field]:
    """The fields a client may send, by the name it sends them under."""
    return {field.data_key or name: field for name, field in schema.fields.items() if not field.dump_only}


def _as_input(field: fields.Field, value):
    if value is None:
        return None
    if isinstance(field, fields.Nested):
        return [as_input(field.schema, v) for v in value] if field.many else as_input(field.schema, value)
    if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
        return [as_input(field.inner.schema, v) for v in value]
    return value


def as_input(schema: Schema, dumped: Mapping) -> dict:
    """A dumped object in the shape its schema loads: read-only fields left out, nested ones too."""
    return {name: _as_input(field, dumped[name]) for name, field in _input_names(schema).items() if name in dumped}


def current_state(schema: Schema, obj) -> dict:
    """What a PUT of `obj` as it is would send (secrets excepted: they are never dumped)."""
    return as_input(schema, schema.dump(obj))


def load_patched(schema: Schema, state: dict, patch: Mapping) -> dict:
    """The current state with the patch's fields over it, loaded as PUT loads its body."""
    try:
        return schema.load({**state, **patch})
    except ValidationError as exc:
        errors = json_safe_messages(exc.messages)  # list items are keyed by int: JSON wants strings
        raise ValidationFailedError(invalid_fields_message(errors), errors=errors) from None


def patched(schema: Schema, obj, patch: Mapping) -> dict:
    """The validated PUT body equivalent to applying `patch` to `obj`."""
    return load_patched(schema, current_state(schema, obj), patch)


def patched_with_destinations(schema: Schema, obj, patch: Mapping) -> dict:
    """`patched` for reports and alerts, whose destinations change only when the patch names them.

    `destinations` replaces the whole list; `recipients` or `cc` replace the email destinations of
    that role (webhooks, Slack and Teams stay, as on a PUT that gives only those); a patch naming
    none of them leaves every destination, its id and its secret as it is.
    """
    state = current_state(schema, obj)
    if "destinations" in patch:
        state.pop("recipients", None)
        state.pop("cc", None)
    elif "recipients" in patch or "cc" in patch:
        state.pop("destinations", None)
    else:
        state.pop("recipients", None)
        state.pop("cc", None)
    data = load_patched(schema, state, patch)
    if not any(name in patch for name in DESTINATION_FIELDS):
        data.pop("destinations", None)
        data.pop("email_only", None)
    return data


class _PatchBody(Schema):
    """The body of a PATCH: any of the PUT schema's fields, none required (the OpenAPI document says so).

    Loading only checks that the body is an object of known fields and hands it over as sent; the
    values are validated by the PUT schema once merged with the current state (`patched`).
    """

    put_schema: Schema

    def load(self, data, *, many=None, partial=None, unknown=None):
        if not isinstance(data, Mapping):
            raise ValidationError({"_schema": ["The body must be a JSON object."]})
        known = _input_names(self.put_schema)
        strangers = sorted(str(name) for name in data if name not in known)
        if strangers:
            raise ValidationError({name: ["Unknown field."] for name in strangers})
        return dict(data)


def _without_default(field: fields.Field) -> fields.Field:
    field = copy.copy(field)
    field.load_default = missing  # a field left out is left as it is, not set to PUT's default
    return field


def patch_schema(put_schema: type[Schema]) -> Schema:
    """The PATCH body schema of a resource whose PUT takes `put_schema` (named `<Resource>Patch`)."""
    name = put_schema.__name__.removesuffix("Schema") + "PatchSchema"
    optional = {key: _without_default(field) for key, field in put_schema._declared_fields.items()}
    cls = type(name, (_PatchBody, put_schema), {"put_schema": put_schema(), **optional})
    return cls(partial=True)
