"""A wall-clock budget for one query, enforced from outside the database.

`statement_timeout` counts per FETCH on a server-side cursor and a query can turn
it off with set_config, so it cannot be the only limit. Each database call runs
under `guard()`: a timer armed with what is left of the budget cancels the call
(psycopg `cancel_safe()`, MySQL `KILL QUERY`, SQLite `interrupt()`) when it fires.
Time spent by the caller between fetches (writing files) is not charged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import QueryTimeoutError

log = logging.getLogger(__name__)


class Deadline:
    def __init__(self, budget_s: float, cancel: Callable[[], None]):
        self.remaining = float(budget_s)
        self.budget_s = budget_s
        self.fired = False
        self._cancel = cancel

    def _fire(self) -> None:
        self.fired = True
        try:
            self._cancel()
        except Exception:  # the query may have ended meanwhile; nothing left to cancel
            log.warning("cancelling a query past its deadline failed", exc_info=True)

    @contextmanager
    def guard(self) -> Iterator[None]:
        if self.fired or self.remaining <= 0:
            self.fired = True
            raise QueryTimeoutError(f"The query used up its {self.budget_s}s budget (BIAPP_QUERY_TIMEOUT_S).")
        timer = threading.Timer(self.remaining, self._fire)
        timer.daemon = True
        started = time.monotonic()
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self.remaining -= time.monotonic() - started
