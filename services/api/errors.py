"""Maps every error to one JSON shape: {code, message, errors?}."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from shared.errors import BIAppError

log = logging.getLogger(__name__)


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


def install_error_handlers(app: Flask) -> None:
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

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong; the error was logged.")
