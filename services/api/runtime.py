"""What the API needs from the outside world, built once by create_app()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, g, has_request_context, request
from sqlalchemy.orm import Session, sessionmaker

from shared.clock import Clock
from shared.config import Settings
from shared.messaging import Publisher
from shared.security.crypto import SecretBox
from shared.storage import ArtifactStore


@dataclass
class ApiRuntime:
    settings: Settings
    session_factory: sessionmaker[Session]
    publisher: Publisher
    secrets: SecretBox
    clock: Clock
    store: ArtifactStore
    broker_ready: Callable[[], None]
    # For GET and HEAD, which only read: on PostgreSQL its connections are in autocommit, which saves the
    # BEGIN and ROLLBACK round trips of a transaction around every request (each list is one statement).
    read_session_factory: sessionmaker[Session] | None = None


def read_only_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions like `factory`'s whose statements run outside a transaction (PostgreSQL), else `factory`."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        return factory
    return sessionmaker(bind=engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


def runtime() -> ApiRuntime:
    return current_app.extensions["biapp"]


def db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        rt = runtime()
        reading = rt.read_session_factory is not None and has_request_context() and request.method in ("GET", "HEAD")
        g.db = (rt.read_session_factory if reading else rt.session_factory)()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
