"""Rate limits (failed logins, connection tests), counted where every API process sees them.

BIAPP_RATELIMIT_STORAGE_URL is `database` by default: the counters live in the application's database
(table rate_limit_counters), so a limit holds across every gunicorn worker of `biapp api` and every
replica. `memory://` keeps them in each process instead (then a limit is per process: N workers let N
times as many attempts through); any other URL is a storage of the `limits` package.

A refused request's Retry-After is the error handler's (services/api/errors.py), the same number its
message gives; the limiter's own per-response estimate goes to X-RateLimit-Retry-After instead of
overwriting it a moment later, rounded differently.
"""

from __future__ import annotations

import itertools
import time

import sqlalchemy as sa
from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address
from limits.storage import Storage
from sqlalchemy.dialects import postgresql, sqlite

from shared.models import RateLimitCounter

DATABASE = "database"
SCHEME = "biapp-database"
_PURGE_EVERY = 200  # increments between two deletes of windows that have ended

limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[],
    header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
)


def limiter_config(storage_url: str, engine: sa.Engine) -> dict:
    """Flask config for the limiter: `database` means this process's engine on the application database."""
    if storage_url != DATABASE:
        return {"RATELIMIT_STORAGE_URI": storage_url}
    return {"RATELIMIT_STORAGE_URI": f"{SCHEME}://", "RATELIMIT_STORAGE_OPTIONS": {"engine": engine}}


class DatabaseStorage(Storage):
    """Fixed-window counters in rate_limit_counters: one atomic upsert per counted request."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *, engine: sa.Engine, **_):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._increments = itertools.count(1)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        table = RateLimitCounter.__table__
        new = self._insert(table).values(key=key, count=amount, expires_at=now + expiry)
        ended = table.c.expires_at <= now
        upsert = new.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": sa.case((ended, new.excluded.count), else_=table.c.count + new.excluded.count),
                "expires_at": sa.case((ended, new.excluded.expires_at), else_=table.c.expires_at),
            },
        ).returning(table.c.count)
        with self.engine.begin() as connection:
            count = connection.execute(upsert).scalar_one()
            if next(self._increments) % _PURGE_EVERY == 0:
                connection.execute(sa.delete(table).where(ended))
        return count

    def _row(self, key: str):
        table = RateLimitCounter.__table__
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(table.c.count, table.c.expires_at).where(table.c.key == key, table.c.expires_at > time.time())
            ).first()

    def get(self, key: str) -> int:
        row = self._row(key)
        return row.count if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row.expires_at if row else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("select 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(sa.delete(RateLimitCounter.__table__)).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(RateLimitCounter.__table__).where(RateLimitCounter.__table__.c.key == key))
