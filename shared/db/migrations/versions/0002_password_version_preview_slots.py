"""password version in tokens, preview slots

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:50:00
"""

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: old pods ignore the new column (it has a server default) and the new table.
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_version", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "preview_slots",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("expires_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_preview_slots_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "slot", name=op.f("pk_preview_slots")),
    )


def downgrade() -> None:
    op.drop_table("preview_slots")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_version")
