"""Request parsing shared by every API blueprint: text that cannot be stored is a 422, never a 500.

Every view declares its arguments with `Blueprint.arguments` (flask-smorest, parsed by webargs). This
parser adds one rule before any schema sees the data: every string (and every object key) in a JSON body,
and every value of a declared query parameter, must be text the application can store and send:

* no NUL character: PostgreSQL text and JSONB cannot hold one, nor can C strings (drivers, file paths);
* no unpaired surrogate (JSON `"\\ud800"`): it has no UTF-8 encoding, so no database, file or mail can take it;
* no NaN or Infinity: Python's JSON parser accepts them, JSON and PostgreSQL's JSONB do not.

Each offending value is reported under its field, dotted for nested values (`filters.0.value`), like the
other validation errors. Unknown query parameters are ignored, whatever they contain.

A body must be a JSON object sent as JSON, and each way of missing that says so: another content type is
a 415, text that is not JSON a 400, JSON that is not an object (a list, a string) a 422.

Validation messages are made JSON-safe as well: marshmallow keys list items by index (an int) and may
merge a message list under `_schema` into the same dict, which no JSON encoder can sort.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

import flask_smorest
import marshmallow as ma
from flask import Flask, abort, request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from services.api.errors import error_response

NUL_MESSAGE = "must not contain NUL characters"
SURROGATE_MESSAGE = "must be valid Unicode text (an unpaired surrogate such as \\ud800 is not)"
NOT_FINITE_MESSAGE = "must be a finite number (NaN and Infinity are not JSON)"

_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
_UNQUOTABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return NUL_MESSAGE
    if _UNPAIRED_SURROGATE.search(text):
        return SURROGATE_MESSAGE
    return None


def _value_problem(value: object) -> str | None:
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_FINITE_MESSAGE
    return None


def _field_name(path: tuple) -> str:
    # A name quoted back to the client must itself be encodable.
    return ".".join(_UNQUOTABLE.sub("\ufffd", str(part)) for part in path) or "_schema"


def _walk(value: object, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(path, message) for every string, key or number in `value` that cannot be stored; no recursion."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                problem = _value_problem(key)
                if problem:
                    yield (*where, key), problem
                stack.append((child, (*where, key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))
        else:
            problem = _value_problem(item)
            if problem:
                yield where, problem


def unstorable_values(value: object, path: tuple = ()) -> dict[str, list[str]]:
    """{dotted field: [message]} for every part of `value` the application could not store."""
    problems: dict[str, list[str]] = {}
    for where, message in _walk(value, path):
        messages = problems.setdefault(_field_name(where), [])
        if message not in messages:
            messages.append(message)
    return problems


def _declared_query_names(schema: ma.Schema) -> set[str]:
    return {field.data_key or name for name, field in schema.fields.items() if not field.dump_only}


def json_safe_messages(messages: object) -> object:
    """Validation messages with every dict key a string (list indexes included), in the same shape."""
    if isinstance(messages, Mapping):
        return {str(key): json_safe_messages(value) for key, value in messages.items()}
    if isinstance(messages, list | tuple):
        return [json_safe_messages(item) for item in messages]
    return messages


NOT_AN_OBJECT_MESSAGE = "The body must be a JSON object."


class ApiParser(FlaskParser):
    def _raw_load_json(self, req):
        """The JSON body; a body sent as anything but JSON is a 415 that says what to send."""
        if not is_json_request(req):
            if req.get_data(cache=True):
                abort(
                    415,
                    description=f"The body must be a JSON object sent with Content-Type: application/json "
                    f"(this one came as {req.mimetype or 'no content type'}).",
                )
            return core.missing  # no body at all: the schema says which fields are missing
        return core.parse_json(req.get_data(cache=True))

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, description=f"The body must be a JSON object; this one is not valid JSON ({error}).")

    def pre_load(self, location_data, *, schema: ma.Schema, req, location: str):
        if location_data is core.missing:
            return location_data
        if location == "json" and not isinstance(location_data, Mapping):
            raise ma.ValidationError({"_schema": [NOT_AN_OBJECT_MESSAGE]})
        if location == "query":
            # Only declared parameters: unknown ones are ignored (EXCLUDE), whatever they contain.
            declared = _declared_query_names(schema)
            problems = {}
            for name in req.args:
                if name in declared:
                    messages = {text_problem(item) for item in req.args.getlist(name)} - {None}
                    if messages:
                        problems[name] = sorted(messages)
        else:
            problems = unstorable_values(location_data)
        if problems:
            raise ma.ValidationError(problems)
        return location_data

    def handle_error(self, error: ma.ValidationError, req, schema, *, error_status_code, error_headers):
        error.messages = json_safe_messages(error.messages)
        super().handle_error(error, req, schema, error_status_code=error_status_code, error_headers=error_headers)


def _reject_undecodable_query_string():
    """A query string with raw bytes that are not UTF-8 is a 400 (werkzeug would raise on `request.args`).

    Clients percent-encode what is not ASCII (RFC 3986); `%ff` stays a valid request and decodes to text.
    """
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return error_response(400, "bad_request", "The query string is not UTF-8: percent-encode other bytes.")
    return None


def install_request_checks(app: Flask) -> None:
    app.before_request(_reject_undecodable_query_string)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the API's parser; every /api blueprint uses this one."""

    ARGUMENTS_PARSER = ApiParser()
