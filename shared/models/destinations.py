"""Where a report or an alert is delivered: email addresses, webhooks, Slack and Teams.

A destination belongs to exactly one report or one alert. Its URL, token and webhook
signing secret are one Fernet-encrypted JSON document (`secret_encrypted`); only a
display `target` (the address, or the URL's host) is stored in the clear.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.types import utcnow
from shared.models.base import Base, uuid_pk

CHANNELS = ("email", "webhook", "slack", "teams")
ROLES = ("to", "cc")


class Destination(Base):
    __tablename__ = "destinations"

    id: Mapped[uuid.UUID] = uuid_pk()
    report_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("scheduled_reports.id", ondelete="CASCADE"), index=True
    )
    alert_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    kind: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    role: Mapped[str] = mapped_column(sa.String(4), nullable=False, default="to")
    # The email address, or None; for the other channels the display target below says where it goes.
    address: Mapped[str | None] = mapped_column(sa.String(320))
    target: Mapped[str] = mapped_column(sa.String(320), nullable=False)
    secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.CheckConstraint("(report_id IS NOT NULL) <> (alert_id IS NOT NULL)", name="one_owner"),
        sa.CheckConstraint(f"kind in {CHANNELS!r}", name="kind"),
        sa.CheckConstraint(f"role in {ROLES!r}", name="role"),
    )


class HasDestinations:
    """`recipients` and `cc` as views of the email destinations (what reports and alerts had before)."""

    destinations: list[Destination]

    def _emails(self, role: str) -> list[str]:
        return [d.address for d in self.destinations if d.kind == "email" and d.role == role]

    def _set_emails(self, role: str, addresses) -> None:
        kept = [d for d in self.destinations if not (d.kind == "email" and d.role == role)]
        added = [Destination(id=uuid.uuid4(), kind="email", role=role, address=a, target=a) for a in addresses or []]
        self.destinations = renumbered(kept + added)

    @property
    def recipients(self) -> list[str]:
        return self._emails("to")

    @recipients.setter
    def recipients(self, addresses) -> None:
        self._set_emails("to", addresses)

    @property
    def cc(self) -> list[str]:
        return self._emails("cc")

    @cc.setter
    def cc(self, addresses) -> None:
        self._set_emails("cc", addresses)


def renumbered(destinations: list[Destination]) -> list[Destination]:
    for position, destination in enumerate(destinations):
        destination.position = position
    return destinations
