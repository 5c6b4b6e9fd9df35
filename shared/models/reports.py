"""Scheduled reports and everything a run of one leaves behind."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db.types import utcnow
from shared.models.base import Base, Timestamped, uuid_pk
from shared.models.destinations import Destination, HasDestinations

EXECUTION_STATES = ("queued", "running", "rendered", "sending", "success", "partial", "failed", "skipped")
TRIGGERS = ("schedule", "manual", "test")
DELIVERY_STATES = ("pending", "sent", "failed")
FORMATS = ("xlsx", "csv", "pdf")
CSV_SEPARATORS = (",", ";", "\t", "|")


class ScheduledReport(HasDestinations, Timestamped, Base):
    __tablename__ = "scheduled_reports"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    saved_query_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("saved_queries.id", ondelete="RESTRICT"))
    dashboard_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("dashboards.id", ondelete="RESTRICT"))
    # {frequency, time, days_of_week, day_of_month, cron, timezone}
    schedule: Mapped[dict] = mapped_column(sa.JSON, nullable=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="UTC")
    formats: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    subject: Mapped[str | None] = mapped_column(sa.Text)
    body: Mapped[str | None] = mapped_column(sa.Text)
    send_if_empty: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    csv_bom: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    csv_separator: Mapped[str] = mapped_column(sa.String(1), nullable=False, default=",", server_default=",")
    # How numbers, dates and the email's own words read: a BCP 47 locale such as de-DE.
    locale: Mapped[str] = mapped_column(sa.String(35), nullable=False, default="en-US", server_default="en-US")
    # Skip a run whose rows hash the same as the last successful run's.
    send_only_if_changed: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    next_run_at: Mapped[datetime | None] = mapped_column()
    destinations: Mapped[list[Destination]] = relationship(
        order_by=Destination.position, cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    __table_args__ = (
        sa.Index("ix_scheduled_reports_due", "is_active", "next_run_at"),
        sa.Index("ix_scheduled_reports_name_id", "name", "id"),  # the reports list's order (and cursor)
        sa.Index("ix_scheduled_reports_owner_name", "owner_id", "name", "id"),  # ... of a user's own reports
        sa.CheckConstraint("(saved_query_id IS NOT NULL) <> (dashboard_id IS NOT NULL)", name="one_source"),
    )


class ReportExecution(Base):
    """One run of a report; its status moves only through guarded UPDATEs."""

    __tablename__ = "report_executions"

    id: Mapped[uuid.UUID] = uuid_pk()
    report_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("scheduled_reports.id", ondelete="CASCADE"), nullable=False
    )
    trigger: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="queued")
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    scheduled_for: Mapped[datetime] = mapped_column(nullable=False)
    queued_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    rendered_at: Mapped[datetime | None] = mapped_column()
    sending_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    row_count: Mapped[int | None] = mapped_column(sa.Integer)
    truncated: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    late: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # sha256 over every section's rows, for "send only if the data changed".
    rows_hash: Mapped[str | None] = mapped_column(sa.String(64))
    # What the run found, written with its files: {"sections": [{"title", "row_count", "truncated",
    # "columns", "align", "rows" (first rows, formatted), "charts" (Vega-Lite specs), "chart_alt",
    # "filters", "kpi"}]}; emails, chat messages and the next run's KPI change read it.
    summary: Mapped[dict | None] = mapped_column(sa.JSON)
    enqueue_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    last_enqueued_at: Mapped[datetime | None] = mapped_column()
    # Who this run is for, fixed when it is queued: [{"address", "kind": "to"|"cc", "channel",
    # "destination_id", "target"}] (rows of older versions carry address and kind only: email).
    recipients: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    # A worker holding the run (renderer or mailer) until lease_expires_at.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column()

    deliveries: Mapped[list[Delivery]] = relationship(
        order_by="Delivery.recipient", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )
    artifacts: Mapped[list[Artifact]] = relationship(
        order_by="Artifact.created_at", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    __table_args__ = (
        # One run per scheduled occurrence; manual and test runs may share an instant.
        sa.Index(
            "uq_report_executions_occurrence",
            "report_id",
            "scheduled_for",
            unique=True,
            postgresql_where=sa.text("trigger = 'schedule'"),
            sqlite_where=sa.text("trigger = 'schedule'"),
        ),
        # Histories newest first, the id breaking ties (read backwards): a report's (and its newest run),
        # and everyone's; on PostgreSQL they carry the filtered columns, so filters are read from the index.
        sa.Index(
            "ix_report_executions_report_history",
            "report_id",
            "queued_at",
            "id",
            postgresql_include=["status", "trigger"],
        ),
        sa.Index(
            "ix_report_executions_history", "queued_at", "id", postgresql_include=["report_id", "status", "trigger"]
        ),
        # ... and of one status (a report's failures, every run in progress)
        sa.Index("ix_report_executions_report_status", "report_id", "status", "queued_at", "id"),
        sa.Index(
            "ix_report_executions_status_history",
            "status",
            "queued_at",
            "id",
            postgresql_include=["report_id", "trigger"],
        ),
        sa.CheckConstraint(f"status in {EXECUTION_STATES!r}", name="status"),
        sa.CheckConstraint(f"trigger in {TRIGGERS!r}", name="trigger"),
    )


class Delivery(Base):
    """The ledger of who has been reached: one row per (execution, destination).

    `recipient` is the email address, or `<channel>:<destination id>` for the other channels.
    """

    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = uuid_pk()
    execution_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("report_executions.id", ondelete="CASCADE"), nullable=False
    )
    recipient: Mapped[str] = mapped_column(sa.String(320), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(4), nullable=False, default="to")  # to | cc
    channel: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="email", server_default="email")
    destination_id: Mapped[uuid.UUID | None] = mapped_column()
    target: Mapped[str | None] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # What the far end said (an SMTP reply or an HTTP status and body), truncated.
    answer: Mapped[str | None] = mapped_column(sa.Text)
    # A transient refusal that named a time (429 Retry-After): not tried again before it.
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    smtp_reply: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    sent_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("execution_id", "recipient"),
        sa.CheckConstraint(f"status in {DELIVERY_STATES!r}", name="status"),
    )


class Artifact(Base):
    """A rendered file; its bytes live in the configured artifact store."""

    __tablename__ = "artifacts"

    id: Mapped[uuid.UUID] = uuid_pk()
    execution_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("report_executions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    format: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    filename: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    size: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    storage: Mapped[str] = mapped_column(sa.String(20), nullable=False)  # database | filesystem
    location: Mapped[str | None] = mapped_column(sa.String(1024))
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(nullable=False, index=True)
    purged_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # The purge's expired files: the rows kept after their bytes went (purged_at set) are not in it.
        sa.Index(
            "ix_artifacts_unpurged_expires_at",
            "expires_at",
            postgresql_where=sa.text("purged_at IS NULL"),
            sqlite_where=sa.text("purged_at IS NULL"),
        ),
    )


class ArtifactChunk(Base):
    """Artifact bytes in the database store, in chunks so memory stays flat."""

    __tablename__ = "artifact_chunks"

    artifact_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)


class Unsubscription(Base):
    """A recipient who asked to stop receiving a report (one click in its email); later runs skip them."""

    __tablename__ = "unsubscriptions"

    id: Mapped[uuid.UUID] = uuid_pk()
    report_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("scheduled_reports.id", ondelete="CASCADE"), nullable=False
    )
    address: Mapped[str] = mapped_column(sa.String(320), nullable=False)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("report_id", "address", name="uq_unsubscriptions_report_address"),)
