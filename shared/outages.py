"""Telling an outage of the application database from a bug.

A lost or refused connection to PostgreSQL (a restart, a failover, a network cut) is transient
everywhere: the work is retried with backoff and nothing is dead-lettered. Anything else that
goes wrong is a bug and is reported as one.
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa


def is_database_outage(exc: BaseException) -> bool:
    """True for errors that mean the database could not be reached or dropped the connection."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
            return True
        if isinstance(seen, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# A database outage is retried with capped backoff for as long as this many attempts last
# (at BIAPP_MAX_BACKOFF_S apart that is many hours): the message is never dead-lettered for it.
OUTAGE_RETRIES = 1000


def retry_when(kinds: tuple[type[BaseException], ...], limit: int):
    """The pipeline's one retry rule for Dramatiq's `retry_when`: declared transient kinds up to
    `limit` retries, database outages for as long as they last, nothing else."""

    def decide(retries: int, exc: BaseException) -> bool:
        if isinstance(exc, kinds):
            return retries < limit
        return is_database_outage(exc) and retries < OUTAGE_RETRIES

    return decide
