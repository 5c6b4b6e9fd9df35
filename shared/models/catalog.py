"""The data side: sources, the semantic catalog, saved queries and dashboards."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, Timestamped, uuid_pk

DATA_SOURCE_KINDS = ("postgresql", "mysql", "sqlite")
CHART_KINDS = ("table", "bar", "line", "area", "pie", "donut", "kpi")


class DataSource(Timestamped, Base):
    __tablename__ = "data_sources"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    port: Mapped[int | None] = mapped_column(sa.Integer)
    database: Mapped[str | None] = mapped_column(sa.String(255))
    username: Mapped[str | None] = mapped_column(sa.String(255))
    # MultiFernet token; never returned by the API, never logged.
    password_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    path: Mapped[str | None] = mapped_column(sa.String(1024))
    options: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))


class SemanticEntity(Timestamped, Base):
    __tablename__ = "semantic_entities"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    data_source_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("data_sources.id", ondelete="RESTRICT"), nullable=False
    )
    table_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    dimensions: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    measures: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list)
    shared: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)


class SavedQuery(Timestamped, Base):
    """Either a semantic query over an entity or one raw SELECT on a data source."""

    __tablename__ = "saved_queries"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(20), nullable=False)  # semantic | sql
    entity_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("semantic_entities.id", ondelete="RESTRICT"))
    definition: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    data_source_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("data_sources.id", ondelete="RESTRICT"))
    sql: Mapped[str | None] = mapped_column(sa.Text)
    shared: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)

    __table_args__ = (sa.CheckConstraint("kind in ('semantic', 'sql')", name="kind"),)


class Dashboard(Timestamped, Base):
    __tablename__ = "dashboards"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    shared: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    widgets: Mapped[list[DashboardWidget]] = relationship(
        back_populates="dashboard",
        order_by="DashboardWidget.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class DashboardWidget(Base):
    __tablename__ = "dashboard_widgets"

    id: Mapped[uuid.UUID] = uuid_pk()
    dashboard_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("dashboards.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    saved_query_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("saved_queries.id", ondelete="RESTRICT"), nullable=False
    )
    chart: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="table")
    # What the chart draws: the x (or slice) column, an optional series column whose values each get
    # their own line or bar group, and the measure columns. Empty: guessed from the result's columns.
    x_field: Mapped[str | None] = mapped_column(sa.String(255))
    series_field: Mapped[str | None] = mapped_column(sa.String(255))
    measures: Mapped[list] = mapped_column(sa.JSON, nullable=False, default=list, server_default="[]")
    dashboard: Mapped[Dashboard] = relationship(back_populates="widgets")
