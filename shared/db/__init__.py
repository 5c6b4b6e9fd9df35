"""Engine and session factories; nothing here connects at import time."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    engine = sa.create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping") and engine.dialect.driver == "psycopg":
        event.listen(engine, "checkout", _check_idle_connection(engine.dialect))
    return engine


def _server_spoke(dbapi_connection) -> bool:
    """Whether an idle pooled connection has anything to read: the server closed it (a restart, an idle
    timeout, a terminated backend) or sent a message nobody asked for. Asks the kernel, no round trip."""
    if dbapi_connection.closed:
        return True
    try:
        socket = dbapi_connection.pgconn.socket
    except Exception:  # noqa: BLE001 - a connection without a socket is gone
        return True
    poller = select.poll()
    poller.register(socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _check_idle_connection(dialect):
    """Pessimistic disconnect handling without a round trip per checkout (which `pool_pre_ping` costs).

    A connection taken from the pool is pinged only when its socket has something to read: when the
    server went away, its end of the socket was closed and the kernel says so. A dead one is replaced,
    with every connection pooled before it, as pre-ping does; a live one that merely had a message
    waiting passes its ping and is used.
    """

    def check(dbapi_connection, _record, _proxy) -> None:
        if not _server_spoke(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None) or dbapi_connection.closed:
                raise sa.exc.InvalidatePoolError(str(exc)) from exc
            raise

    return check


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
