"""What the API needs from the outside world, built once by create_app()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, g
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


def runtime() -> ApiRuntime:
    return current_app.extensions["biapp"]


def db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = runtime().session_factory()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
