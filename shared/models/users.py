"""People who log in, and the tokens they gave back."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamped, uuid_pk

ROLES = ("admin", "analyst", "viewer")


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(sa.String(320), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    role: Mapped[str] = mapped_column(sa.String(20), nullable=False, default="viewer")
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    password_changed_at: Mapped[datetime | None] = mapped_column()
    # Carried in every token as "pwv": a password change bumps it, so older tokens stop at once
    # (a timestamp in seconds cannot tell apart a token issued in the same second).
    password_version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")

    __table_args__ = (sa.CheckConstraint(f"role in {ROLES!r}", name="role"),)


class RevokedToken(Base):
    """A JWT given back by logout; kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(nullable=False, index=True)


class PreviewSlot(Base):
    """One running preview of a user: at most two rows per user, so a third preview is a 429.

    A row lives only while its preview runs; `expires_at` frees the slot of a process that died.
    """

    __tablename__ = "preview_slots"

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    slot: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)


class RateLimitCounter(Base):
    """One rate-limit window (failed logins, connection tests) shared by every API process and replica.

    `key` names the limit and who it counts; `expires_at` (seconds since the epoch) ends the window.
    """

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    expires_at: Mapped[float] = mapped_column(sa.Float, nullable=False, index=True)
