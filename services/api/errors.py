"""Maps every error to one JSON shape: {code, message, errors?}."""

from __future__ import annotations

import json
import logging

from flask import Flask, g, jsonify, request
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from shared.errors import BIAppError

log = logging.getLogger(__name__)

# No request body needs more; Python's parser (and everything that walks the parsed value after it)
# recurses once per level and fails with a RecursionError somewhere near a thousand.
MAX_JSON_DEPTH = 64
DATABASE_RETRY_AFTER_S = 5


def error_response(status: int, code: str, message: str, errors: dict | None = None):
    body: dict = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), status


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
        return error_response(exc.status, exc.code, exc.message, exc.errors)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        if exc.code == 422 and "messages" in data:
            errors = _flatten_webargs(data["messages"])
            fields = ", ".join(sorted(errors))
            return error_response(422, "validation_error", f"Invalid fields: {fields}.", errors)
        if exc.code == 413:
            return error_response(413, "payload_too_large", "The request body is too large.")
        if exc.code == 429:
            return error_response(429, "too_many_requests", "Too many attempts; wait and try again.")
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
