"""Alerts: a saved query watched on a schedule, its evaluations and who was told."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db.types import utcnow
from shared.models.base import Base, Timestamped, uuid_pk
from shared.models.destinations import Destination, HasDestinations

ALERT_STATES = ("true", "false", "error")
EVENT_STATES = ("pending", *ALERT_STATES)
ALERT_TRIGGERS = ("schedule", "manual")
NOTIFY_MODES = ("on_change", "always")
NOTIFY_REASONS = ("triggered", "recovered", "error")
ALERT_DELIVERY_STATES = ("pending", "sending", "sent", "failed")


class Alert(HasDestinations, Timestamped, Base):
    __tablename__ = "alerts"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    saved_query_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("saved_queries.id", ondelete="RESTRICT"), nullable=False
    )
    # {kind: row_count|value, op, value, column?, aggregate?} (see shared.alerts)
    condition: Mapped[dict] = mapped_column(sa.JSON, nullable=False)
    # the same shape as a report's schedule (shared.schedules)
    schedule: Mapped[dict] = mapped_column(sa.JSON, nullable=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="UTC")
    notify: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="on_change")
    notify_on_recovery: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    notify_on_error: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column()
    # Outcome of the newest evaluation (true | false | error) ...
    last_state: Mapped[str | None] = mapped_column(sa.String(5))
    # ... and of the newest one that produced an answer: what "the condition turned true" compares with,
    # so a failed query between two true results does not email again.
    last_condition: Mapped[bool | None] = mapped_column(sa.Boolean)
    last_evaluated_at: Mapped[datetime | None] = mapped_column()
    destinations: Mapped[list[Destination]] = relationship(
        order_by=Destination.position, cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    __table_args__ = (
        sa.Index("ix_alerts_due", "is_active", "next_run_at"),
        sa.CheckConstraint(f"notify in {NOTIFY_MODES!r}", name="notify"),
    )


class AlertEvent(Base):
    """One evaluation of an alert; `state` leaves `pending` through one guarded UPDATE."""

    __tablename__ = "alert_events"

    id: Mapped[uuid.UUID] = uuid_pk()
    alert_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False)
    trigger: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    scheduled_for: Mapped[datetime] = mapped_column(nullable=False)
    queued_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    last_enqueued_at: Mapped[datetime | None] = mapped_column()
    enqueue_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    evaluated_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(sa.String(7), nullable=False, default="pending")
    observed: Mapped[object | None] = mapped_column(sa.JSON(none_as_null=True))
    row_count: Mapped[int | None] = mapped_column(sa.BigInteger)
    message: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    notified: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    notify_reason: Mapped[str | None] = mapped_column(sa.String(10))
    # The same delivery lease as an execution's (shared/executions/leases.py), and when delivery
    # began: transient failures are retried for BIAPP_MAIL_RETRY_WINDOW_S from then.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    delivering_since: Mapped[datetime | None] = mapped_column()

    deliveries: Mapped[list[AlertDelivery]] = relationship(
        order_by="AlertDelivery.recipient", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    __table_args__ = (
        # One evaluation per scheduled occurrence; manual ones may share an instant.
        sa.Index(
            "uq_alert_events_occurrence",
            "alert_id",
            "scheduled_for",
            unique=True,
            postgresql_where=sa.text("trigger = 'schedule'"),
            sqlite_where=sa.text("trigger = 'schedule'"),
        ),
        # An alert's evaluations newest first, the id breaking ties (read backwards: the events list).
        sa.Index(
            "ix_alert_events_alert_history", "alert_id", "queued_at", "id", postgresql_include=["state", "trigger"]
        ),
        sa.Index("ix_alert_events_state_queued_at", "state", "queued_at"),
        sa.CheckConstraint(f"state in {EVENT_STATES!r}", name="state"),
        sa.CheckConstraint(f"trigger in {ALERT_TRIGGERS!r}", name="trigger"),
    )


class AlertDelivery(Base):
    """The ledger of who has been told about one event: one row per (event, recipient)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[uuid.UUID] = uuid_pk()
    event_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False)
    recipient: Mapped[str] = mapped_column(sa.String(320), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(4), nullable=False, default="to")  # to | cc
    channel: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="email", server_default="email")
    destination_id: Mapped[uuid.UUID | None] = mapped_column()
    target: Mapped[str | None] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    answer: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    claimed_by: Mapped[str | None] = mapped_column(sa.String(120))
    claimed_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("event_id", "recipient"),
        sa.CheckConstraint(f"status in {ALERT_DELIVERY_STATES!r}", name="status"),
    )
