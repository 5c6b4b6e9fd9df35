"""Connections to the data sources reports run on: URLs built from fields, pooled per source."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from shared.config import Settings
from shared.errors import FieldError
from shared.models import DataSource
from shared.security.crypto import SecretBox


def resolve_sqlite_path(settings: Settings, relative: str) -> Path:
    """A SQLite file inside BIAPP_SQLITE_ROOT; anything else (.., absolute, links out) is refused."""
    root = Path(settings.sqlite_root).resolve()
    candidate = (root / relative).resolve()
    if root != candidate and root not in candidate.parents:
        raise FieldError("path", "must be inside the allowed SQLite directory")
    return candidate


def build_url(source: DataSource, secrets: SecretBox, settings: Settings) -> URL:
    if source.kind == "sqlite":
        path = resolve_sqlite_path(settings, source.path or "")
        return URL.create("sqlite", database=str(path))
    password = (
        secrets.decrypt(source.password_encrypted, what="data source password") if source.password_encrypted else None
    )
    driver = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}[source.kind]
    return URL.create(
        driver,
        username=source.username,
        password=password,
        host=source.host,
        port=source.port,
        database=source.database,
        query={k: str(v) for k, v in (source.options or {}).items()},
    )


def driver_connect_args(source: DataSource, url: URL) -> dict:
    """Driver arguments the URL cannot carry: PyMySQL sends a str password as Latin-1, the server hashed UTF-8."""
    if source.kind == "mysql" and url.password:
        return {"password": url.password.encode()}
    return {}


class SourceEngines:
    """One pooled engine per data source, rebuilt when the source changes."""

    def __init__(self, settings: Settings, secrets: SecretBox):
        self.settings = settings
        self.secrets = secrets
        self._engines: dict[object, tuple[object, sa.Engine]] = {}
        self._lock = threading.Lock()

    def get(self, source: DataSource) -> sa.Engine:
        version = source.updated_at
        with self._lock:
            cached = self._engines.get(source.id)
            if cached and cached[0] == version:
                return cached[1]
            if cached:
                cached[1].dispose()
            engine = self._create(source)
            self._engines[source.id] = (version, engine)
            return engine

    def _create(self, source: DataSource) -> sa.Engine:
        url = build_url(source, self.secrets, self.settings)
        if source.kind == "sqlite":
            path = url.database

            def connect() -> sqlite3.Connection:
                # Read-only URI: a report can never write to the file it reads.
                return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

            return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            connect_args={"connect_timeout": 10, **driver_connect_args(source, url)},
        )

    def forget(self, source_id: object) -> None:
        with self._lock:
            cached = self._engines.pop(source_id, None)
        if cached:
            cached[1].dispose()

    def dispose(self) -> None:
        with self._lock:
            for _version, engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
