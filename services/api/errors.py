"""Maps every error to one JSON shape: {code, message, errors?}."""

from __future__ import annotations

import json
import logging
import math
import time

from flask import Flask, g, jsonify, request
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from services.api.limits import limiter
from shared.errors import BIAppError, TooManyRequestsError

log = logging.getLogger(__name__)

# No request body needs more; Python's parser (and everything that walks the parsed value after it)
# recurses once per level and fails with a RecursionError somewhere near a thousand.
MAX_JSON_DEPTH = 64
DATABASE_RETRY_AFTER_S = 5
DEFAULT_RETRY_AFTER_S = 60


def error_response(status: int, code: str, message: str, errors: dict | None = None):
    body: dict = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), status


def _leaves(errors, path: tuple = ()) -> list[tuple[str, str]]:
    """(dotted field, first message) for each field an error names, nested ones included (`schedule.cron`)."""
    if isinstance(errors, dict):
        found = []
        for key, value in errors.items():
            found += _leaves(value, path if key == "_schema" else (*path, str(key)))
        return found
    if isinstance(errors, list | tuple):
        first = next((item for item in errors if isinstance(item, str)), None)
        nested = [leaf for item in errors if not isinstance(item, str) for leaf in _leaves(item, path)]
        return ([(".".join(path), first)] if first is not None else []) + nested
    return [(".".join(path), str(errors))]


def invalid_fields_message(errors: dict) -> str:
    """One line for a 422: the field and what is wrong with it, or the fields when several are wrong."""
    leaves = _leaves(errors)
    names = sorted({name or "body" for name, _ in leaves})
    if len(leaves) == 1:
        name, message = leaves[0]
        return f"{name}: {message}" if name else message
    return f"Invalid fields: {', '.join(names)}."


def _retry_after_s() -> int:
    """Whole seconds until the limit that refused this request lets the next one through (at least 1)."""
    limit = getattr(limiter, "current_limit", None)
    try:
        return max(1, math.ceil(limit.window[0] - time.time())) if limit is not None else DEFAULT_RETRY_AFTER_S
    except Exception:  # the limiter's storage is unreachable: a guess is better than no answer
        log.debug("could not read the rate limit window", exc_info=True)
        return DEFAULT_RETRY_AFTER_S


def too_many_requests(message: str, seconds: int):
    """A 429 that says, in words and in Retry-After, how many seconds to wait."""
    unit = "second" if seconds == 1 else "seconds"
    response, status = error_response(429, "too_many_requests", f"{message} Try again in {seconds} {unit}.")
    response.headers["Retry-After"] = str(seconds)
    return response, status


def _flatten_webargs(messages: dict) -> dict:
    # webargs nests by location ({"json": {...}, "query": {...}}); users want fields.
    flat: dict = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def _nested_deeper_than(value, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _reject_deeply_nested_json():
    """A JSON body nested beyond MAX_JSON_DEPTH is a 400 before any parser or schema sees it."""
    if not request.is_json:
        return None  # only JSON bodies are parsed as JSON
    data = request.get_data(cache=True)
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return None  # cannot nest deeper than that: the common case, no extra parse
    try:
        too_deep = _nested_deeper_than(json.loads(data), MAX_JSON_DEPTH)
    except RecursionError:
        too_deep = True
    except ValueError:
        return None  # not JSON at all: the request parser answers that with its own 400
    if not too_deep:
        return None
    return error_response(400, "bad_request", f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels).")


def install_error_handlers(app: Flask) -> None:
    app.before_request(_reject_deeply_nested_json)

    @app.errorhandler(BIAppError)
    def _biapp(exc: BIAppError):
        if isinstance(exc, TooManyRequestsError):
            return too_many_requests(exc.message, exc.retry_after_s)
        return error_response(exc.status, exc.code, exc.message, exc.errors)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        if exc.code == 422 and "messages" in data:
            errors = _flatten_webargs(data["messages"])
            return error_response(422, "validation_error", invalid_fields_message(errors), errors)
        if exc.code == 413:
            return error_response(413, "payload_too_large", "The request body is too large.")
        if exc.code == 429:
            return too_many_requests("Too many attempts.", _retry_after_s())
        message = data.get("message") or exc.description or exc.name
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, message)

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError):
        # A foreign key (still in use) or a unique key (already exists): nothing was changed.
        session = g.get("db")
        if session is not None:
            session.rollback()
        log.info("integrity conflict: %s", type(exc.orig).__name__)
        return error_response(
            409,
            "conflict",
            "This conflicts with existing data: it is still used by another object (a report, alert, "
            "dashboard or saved query) or one like it already exists. Nothing was changed.",
        )

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def _database_unavailable(exc: Exception):
        # The application database is down, restarting or out of connections: a retry will work.
        session = g.pop("db", None)
        if session is not None:
            try:
                session.close()
            except Exception:  # the connection is gone already; the pool replaces it
                log.debug("closing a session after a database error failed", exc_info=True)
        log.warning("application database unavailable: %s", type(getattr(exc, "orig", exc) or exc).__name__)
        response, status = error_response(
            503, "database_unavailable", "The database is unreachable right now; try again in a few seconds."
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong; the error was logged.")
