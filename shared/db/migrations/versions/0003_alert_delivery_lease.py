"""alert events carry the delivery lease

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:20:00
"""

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: nullable columns an older mailer ignores.
    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", shared.db.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("delivering_since", shared.db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("delivering_since")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
