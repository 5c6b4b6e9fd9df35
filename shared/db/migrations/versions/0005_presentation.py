"""what recipients receive: chart fields, report locale and CSV separator, send-only-if-changed, unsubscribes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:00:00
"""

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dashboard_widgets") as batch:
        batch.add_column(sa.Column("x_field", sa.String(255), nullable=True))
        batch.add_column(sa.Column("series_field", sa.String(255), nullable=True))
        batch.add_column(sa.Column("measures", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("scheduled_reports") as batch:
        batch.add_column(sa.Column("csv_separator", sa.String(1), nullable=False, server_default=","))
        batch.add_column(sa.Column("locale", sa.String(35), nullable=False, server_default="en-US"))
        batch.add_column(sa.Column("send_only_if_changed", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("report_executions") as batch:
        batch.add_column(sa.Column("rows_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=True))
    op.create_table(
        "unsubscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["scheduled_reports.id"], name="fk_unsubscriptions_report_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_unsubscriptions"),
        sa.UniqueConstraint("report_id", "address", name="uq_unsubscriptions_report_address"),
    )


def downgrade() -> None:
    op.drop_table("unsubscriptions")
    with op.batch_alter_table("report_executions") as batch:
        batch.drop_column("summary")
        batch.drop_column("rows_hash")
    with op.batch_alter_table("scheduled_reports") as batch:
        batch.drop_column("send_only_if_changed")
        batch.drop_column("locale")
        batch.drop_column("csv_separator")
    with op.batch_alter_table("dashboard_widgets") as batch:
        batch.drop_column("measures")
        batch.drop_column("series_field")
        batch.drop_column("x_field")
