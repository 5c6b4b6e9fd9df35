"""Connections to the data sources reports run on: URLs built from fields, pooled per source.

Every connection taken from a pool passes `boundaries.guard_connection` (not the app's database, not a
privileged login), and every connection returned to a pool is reset (`DISCARD ALL` on
PostgreSQL, COM_RESET_CONNECTION on MySQL/MariaDB), so nothing one query leaves behind
(advisory locks, settings, temporary tables) reaches the next.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from shared.config import Settings
from shared.errors import DataSourceRefusedError
from shared.models import DataSource
from shared.query import boundaries, sqlite_types
from shared.security.crypto import SecretBox

log = logging.getLogger(__name__)


# SQLite reads `%xx`, `?` and `#` in a file: URI as escapes, options and fragments: none may come from users.
_SQLITE_PATH_FORBIDDEN = ("%", "?", "#", "\x00")


def resolve_sqlite_path(settings: Settings, relative: str) -> Path:
    """A SQLite file inside BIAPP_SQLITE_ROOT; anything else (.., absolute, links out, URI tricks) is refused."""
    text = relative or ""
    if any(c in text for c in _SQLITE_PATH_FORBIDDEN) or text.strip().lower().startswith("file:"):
        raise DataSourceRefusedError("path", "must be a plain file name: '%', '?', '#' and 'file:' are not allowed")
    root = Path(settings.sqlite_root).resolve()
    candidate = (root / text).resolve()
    if root != candidate and root not in candidate.parents:
        raise DataSourceRefusedError("path", "must be inside the allowed SQLite directory")
    boundaries.check_not_app_database(settings, "sqlite", path=candidate)
    return candidate


def sqlite_uri(path: Path) -> str:
    """A read-only URI built from the resolved path (Path.as_uri escapes what SQLite would decode)."""
    return f"{path.as_uri()}?mode=ro"


def open_sqlite(settings: Settings, relative: str, timeout: float = 5.0) -> sqlite3.Connection:
    """Open a SQLite source read-only, checking the path again (the file may have been swapped for a link).

    Declared DATE, DATETIME, TIMESTAMP, NUMERIC and DECIMAL columns come back typed (shared.query.sqlite_types).
    """
    sqlite_types.register()
    connection = sqlite3.connect(
        sqlite_uri(resolve_sqlite_path(settings, relative)),
        uri=True,
        check_same_thread=False,
        timeout=timeout,
        detect_types=sqlite_types.DETECT_TYPES,
    )
    try:
        boundaries.guard_connection(connection, "sqlite")
    except BaseException:
        connection.close()
        raise
    return connection


def build_url(source: DataSource, secrets: SecretBox, settings: Settings) -> URL:
    if source.kind == "sqlite":
        path = resolve_sqlite_path(settings, source.path or "")
        return URL.create("sqlite", database=str(path))
    boundaries.check_not_app_database(
        settings, source.kind, host=source.host, port=source.port, database=source.database
    )
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


def install_guards(engine: sa.Engine, kind: str) -> None:
    """Check each connection taken from the pool, and reset each one given back."""

    @sa.event.listens_for(engine, "checkout")
    def _guard(dbapi_connection, _record, _proxy) -> None:
        try:
            boundaries.guard_connection(dbapi_connection, kind, warn=False)
        finally:
            dbapi_connection.rollback()

    @sa.event.listens_for(engine, "reset")
    def _reset(dbapi_connection, record, _state) -> None:
        try:
            reset_session(dbapi_connection, kind)
        except Exception:
            log.warning("could not reset a data source connection; dropping it", exc_info=True)
            record.invalidate()


_COM_RESET_CONNECTION = 0x1F


def reset_session(dbapi_connection, kind: str) -> None:
    """Forget everything a query set on this session: locks, settings, temporary tables, prepared statements."""
    if kind == "postgresql":
        dbapi_connection.rollback()
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute("DISCARD ALL")
        finally:
            dbapi_connection.autocommit = False
    elif kind == "mysql":
        dbapi_connection.rollback()
        dbapi_connection._execute_command(_COM_RESET_CONNECTION, b"")
        dbapi_connection._read_ok_packet()
        dbapi_connection.set_character_set(dbapi_connection.charset, dbapi_connection.collation)


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
            settings, relative = self.settings, source.path or ""
            # Read-only URI, path checked at every open: a report can never write to the file it reads.
            return sa.create_engine(
                "sqlite://", creator=lambda: open_sqlite(settings, relative), poolclass=sa.pool.NullPool
            )
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            connect_args={"connect_timeout": 10, **driver_connect_args(source, url)},
        )
        install_guards(engine, source.kind)
        return engine

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
