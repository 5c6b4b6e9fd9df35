"""What a worker process needs, built once by each service's bootstrap()."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.db import make_engine, make_session_factory
from shared.messaging import Publisher
from shared.query.sources import SourceEngines
from shared.security.crypto import SecretBox
from shared.storage import ArtifactStore, build_store


@dataclass
class WorkerContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    publisher: Publisher
    store: ArtifactStore
    secrets: SecretBox
    engines: SourceEngines
    clock: Clock = field(default_factory=SystemClock)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def build_context(
    settings: Settings, publisher: Publisher, *, clock: Clock | None = None, session_factory=None
) -> WorkerContext:
    secrets = SecretBox(settings.fernet_keys)
    return WorkerContext(
        settings=settings,
        session_factory=session_factory or make_session_factory(make_engine(settings.database_url)),
        publisher=publisher,
        store=build_store(settings.artifact_store),
        secrets=secrets,
        engines=SourceEngines(settings, secrets),
        clock=clock or SystemClock(),
    )
