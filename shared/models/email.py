"""SMTP settings: one per user, plus an optional system-wide default (owner_id NULL)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamped, uuid_pk

SMTP_SECURITY = ("starttls", "ssl", "none")


class EmailConfig(Timestamped, Base):
    __tablename__ = "email_configs"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    is_system_default: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    host: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    port: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    security: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="starttls")
    username: Mapped[str | None] = mapped_column(sa.String(320))
    password_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    from_address: Mapped[str] = mapped_column(sa.String(320), nullable=False)
    from_name: Mapped[str | None] = mapped_column(sa.String(200))
    reply_to: Mapped[str | None] = mapped_column(sa.String(320))
