"""The Flask application factory: builds every connection here, never at import time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pika
from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields

from services.api.auth.sessions import jwt_config
from services.api.console.views import bp as console_bp
from services.api.destination_schemas import WebhookPayloadSchema
from services.api.docs.views import bp as api_docs_bp
from services.api.errors import install_error_handlers
from services.api.limits import limiter, limiter_config
from services.api.ops.views import bp as ops_bp
from services.api.ops.views import install_request_metrics
from services.api.parsing import install_request_checks
from services.api.runtime import ApiRuntime, close_db, read_only_sessions
from services.api.security import install_jwt
from shared.clock import Clock, SystemClock
from shared.config import Settings, load_settings
from shared.db import make_engine, make_session_factory
from shared.messaging import BrokerPublisher, Publisher, build_broker
from shared.security.crypto import SecretBox
from shared.storage import build_store


def _blueprints() -> list:
    from services.api.alerts.views import blp as alerts
    from services.api.auth.views import blp as auth
    from services.api.dashboards.views import blp as dashboards
    from services.api.data_sources.views import blp as data_sources
    from services.api.email_config.views import blp as email_config
    from services.api.executions.views import blp as executions
    from services.api.links.views import blp as links
    from services.api.reports.views import blp as reports
    from services.api.saved_queries.views import blp as saved_queries
    from services.api.schedules.views import blp as schedules
    from services.api.semantic_entities.views import blp as semantic_entities
    from services.api.unsubscribe.views import blp as unsubscribe
    from services.api.users.views import blp as users

    return [
        auth,
        users,
        data_sources,
        semantic_entities,
        saved_queries,
        dashboards,
        email_config,
        reports,
        schedules,
        executions,
        alerts,
        links,
        unsubscribe,
    ]


class ErrorSchema(Schema):
    """What every error answers (services/api/errors.py); `errors`, keyed by field, for validation errors."""

    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), metadata={"description": "field: [messages], for validation"})


class BIAppApi(Api):
    ERROR_SCHEMA = ErrorSchema


def _broker_check(settings: Settings) -> Callable[[], None]:
    if settings.broker_is_memory:
        return lambda: None

    def check() -> None:
        params = pika.URLParameters(settings.broker_url)
        params.socket_timeout = 2
        params.blocked_connection_timeout = 2
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()

    return check


def create_app(
    settings: Settings | None = None,
    *,
    publisher: Publisher | None = None,
    clock: Clock | None = None,
    session_factory=None,
) -> Flask:
    settings = settings or load_settings()
    app = Flask("biapp")
    app.config.update(
        API_TITLE="BIApp Reports",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        # /api/docs is services/api/docs/ (Swagger UI from the installed package: no CDN, works offline)
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
            "security": [{"bearerAuth": []}],
        },
        JWT_SECRET_KEY=settings.secret_key,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.jwt_expires_s),
        **jwt_config(settings),  # bearer headers, and the console's HttpOnly cookie (services/api/auth/sessions.py)
        JWT_ERROR_MESSAGE_KEY="message",
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    if session_factory is None:
        session_factory = make_session_factory(make_engine(settings.database_url))
    app.config.update(limiter_config(settings.ratelimit_storage_url, session_factory.kw["bind"]))
    if publisher is None:
        publisher = BrokerPublisher(build_broker(settings))
    app.extensions["biapp"] = ApiRuntime(
        settings=settings,
        session_factory=session_factory,
        publisher=publisher,
        secrets=SecretBox(settings.fernet_keys),
        clock=clock or SystemClock(),
        store=build_store(settings.artifact_store),
        broker_ready=_broker_check(settings),
        read_session_factory=read_only_sessions(session_factory),
    )
    app.teardown_appcontext(close_db)
    install_request_checks(app)
    install_jwt(app)
    limiter.init_app(app)
    api = BIAppApi(app)
    # Not a response of any route: what webhook destinations receive (docs/user-guide.md, section 7).
    api.spec.components.schema("WebhookPayload", schema=WebhookPayloadSchema)
    for blueprint in _blueprints():
        api.register_blueprint(blueprint)
    app.register_blueprint(ops_bp)
    app.register_blueprint(api_docs_bp)
    app.register_blueprint(console_bp)  # the web console at / (services/api/console/)
    install_request_metrics(app)
    install_error_handlers(app)
    return app
