"""How many previews one user may run at once, across every API process and replica.

A preview runs someone's query on a data source while a person waits. Two at a time per
user is plenty for a person and bounds what one login can make the sources (and the API's
threads) do. A slot is a row in `preview_slots`, taken and given back in short transactions
of their own, so no application-database connection is held while the query runs; a slot
whose process died frees itself at `expires_at` (the preview's own time limit, plus a margin).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import TooManyRequestsError
from shared.models import PreviewSlot

MARGIN = timedelta(seconds=30)


def take_slot(factory: sessionmaker[Session], user_id: uuid.UUID, *, now: datetime, limit: int, ttl_s: int) -> int:
    """Take a free slot (0 … limit-1) or raise TooManyRequestsError."""
    expires = now + timedelta(seconds=ttl_s) + MARGIN
    with factory() as session:
        session.execute(sa.delete(PreviewSlot).where(PreviewSlot.user_id == user_id, PreviewSlot.expires_at < now))
        session.commit()
        taken = set(session.execute(sa.select(PreviewSlot.slot).where(PreviewSlot.user_id == user_id)).scalars())
        for slot in range(limit):
            if slot in taken:
                continue
            session.add(PreviewSlot(user_id=user_id, slot=slot, expires_at=expires))
            try:
                session.commit()
                return slot
            except IntegrityError:  # another request took it a moment ago
                session.rollback()
    raise TooManyRequestsError(
        f"You already have {limit} previews running; wait for one to finish (BIAPP_PREVIEWS_PER_USER)."
    )


def give_back(factory: sessionmaker[Session], user_id: uuid.UUID, slot: int) -> None:
    with factory() as session:
        session.execute(sa.delete(PreviewSlot).where(PreviewSlot.user_id == user_id, PreviewSlot.slot == slot))
        session.commit()


@contextmanager
def preview_slot(
    factory: sessionmaker[Session], user_id: uuid.UUID, *, now: datetime, limit: int, ttl_s: int
) -> Iterator[int]:
    slot = take_slot(factory, user_id, now=now, limit=limit, ttl_s=ttl_s)
    try:
        yield slot
    finally:
        give_back(factory, user_id, slot)


class ProcessGate:
    """At most `limit` previews at once in this process, so the API's threads stay free for everyone else."""

    def __init__(self, limit: int):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def enter(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise TooManyRequestsError(f"The server is already running {self.limit} previews.", retry_after_s=2)
        try:
            yield
        finally:
            self._slots.release()
