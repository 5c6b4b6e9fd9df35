"""destinations: email, webhook, Slack and Teams beside each other; the ledger names its channel

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00
"""

import uuid

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OWNERS = (("scheduled_reports", "report_id"), ("alerts", "alert_id"))
LEDGERS = ("deliveries", "alert_deliveries")


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=True),
        sa.Column("alert_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("role", sa.String(length=4), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(report_id IS NOT NULL) <> (alert_id IS NOT NULL)", name=op.f("ck_destinations_one_owner")),
        sa.CheckConstraint("kind in ('email', 'webhook', 'slack', 'teams')", name=op.f("ck_destinations_kind")),
        sa.CheckConstraint("role in ('to', 'cc')", name=op.f("ck_destinations_role")),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["scheduled_reports.id"],
            name=op.f("fk_destinations_report_id_scheduled_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_destinations_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
    )
    op.create_index(op.f("ix_destinations_report_id"), "destinations", ["report_id"])
    op.create_index(op.f("ix_destinations_alert_id"), "destinations", ["alert_id"])
    for ledger in LEDGERS:
        with op.batch_alter_table(ledger) as batch:
            batch.add_column(sa.Column("channel", sa.String(length=10), server_default="email", nullable=False))
            batch.add_column(sa.Column("destination_id", sa.Uuid(), nullable=True))
            batch.add_column(sa.Column("target", sa.String(length=320), nullable=True))
            batch.add_column(sa.Column("answer", sa.Text(), nullable=True))
            batch.add_column(sa.Column("next_attempt_at", shared.db.types.UTCDateTime(timezone=True), nullable=True))
    # Every address a report or alert had becomes an email destination, in the same order.
    bind = op.get_bind()
    destinations = sa.table(
        "destinations",
        sa.column("id", sa.Uuid()),
        sa.column("report_id", sa.Uuid()),
        sa.column("alert_id", sa.Uuid()),
        sa.column("position", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("role", sa.String()),
        sa.column("address", sa.String()),
        sa.column("target", sa.String()),
        sa.column("created_at", shared.db.types.UTCDateTime()),
        sa.column("updated_at", shared.db.types.UTCDateTime()),
    )
    now = shared.db.types.utcnow()
    for table_name, owner_column in OWNERS:
        table = sa.table(
            table_name, sa.column("id", sa.Uuid()), sa.column("recipients", sa.JSON()), sa.column("cc", sa.JSON())
        )
        rows = []
        for owner_id, recipients, cc in bind.execute(sa.select(table.c.id, table.c.recipients, table.c.cc)):
            position = 0
            for role, addresses in (("to", recipients or []), ("cc", cc or [])):
                for address in addresses:
                    rows.append(
                        {
                            "id": uuid.uuid4(),
                            "report_id": owner_id if owner_column == "report_id" else None,
                            "alert_id": owner_id if owner_column == "alert_id" else None,
                            "position": position,
                            "kind": "email",
                            "role": role,
                            "address": address,
                            "target": address,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    position += 1
        if rows:
            bind.execute(destinations.insert(), rows)
        with op.batch_alter_table(table_name) as batch:
            batch.drop_column("cc")
            batch.drop_column("recipients")


def downgrade() -> None:
    bind = op.get_bind()
    destinations = sa.table(
        "destinations",
        sa.column("report_id", sa.Uuid()),
        sa.column("alert_id", sa.Uuid()),
        sa.column("position", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("role", sa.String()),
        sa.column("address", sa.String()),
    )
    for table_name, owner_column in OWNERS:
        with op.batch_alter_table(table_name) as batch:
            batch.add_column(sa.Column("recipients", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("cc", sa.JSON(), nullable=True))
        table = sa.table(
            table_name, sa.column("id", sa.Uuid()), sa.column("recipients", sa.JSON()), sa.column("cc", sa.JSON())
        )
        owner = getattr(destinations.c, owner_column)
        found: dict = {}
        for owner_id, role, address in bind.execute(
            sa.select(owner, destinations.c.role, destinations.c.address)
            .where(owner.is_not(None), destinations.c.kind == "email")
            .order_by(owner, destinations.c.position)
        ):
            found.setdefault(owner_id, {"to": [], "cc": []})[role].append(address)
        for owner_id in bind.execute(sa.select(table.c.id)).scalars():
            lists = found.get(owner_id, {"to": [], "cc": []})
            bind.execute(table.update().where(table.c.id == owner_id).values(recipients=lists["to"], cc=lists["cc"]))
        with op.batch_alter_table(table_name) as batch:
            batch.alter_column("recipients", nullable=False)
            batch.alter_column("cc", nullable=False)
    for ledger in LEDGERS:
        with op.batch_alter_table(ledger) as batch:
            batch.drop_column("next_attempt_at")
            batch.drop_column("answer")
            batch.drop_column("target")
            batch.drop_column("destination_id")
            batch.drop_column("channel")
    op.drop_index(op.f("ix_destinations_alert_id"), table_name="destinations")
    op.drop_index(op.f("ix_destinations_report_id"), table_name="destinations")
    op.drop_table("destinations")
