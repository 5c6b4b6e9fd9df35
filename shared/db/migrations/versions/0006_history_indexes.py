"""history at scale: keyset indexes for execution and alert histories, and the reports list's order

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-10 00:00:00

Each history is read newest first with the id breaking ties, (queued_at DESC, id DESC), and paged by a
cursor on that pair: these indexes, read backwards, answer a page (and a report's newest run) by walking
the index from the cursor. They replace the (report_id, queued_at) and (alert_id, queued_at) indexes, which they cover.

On PostgreSQL the indexes are built CONCURRENTLY (outside the migration's transaction), so runs and
evaluations keep being written while a large history is indexed; an index left invalid by an interrupted
build is dropped and built again by running the migration again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEW = (
    ("ix_report_executions_report_history", "report_executions", ["report_id", "queued_at", "id"]),
    ("ix_report_executions_history", "report_executions", ["queued_at", "id"]),
    ("ix_alert_events_alert_history", "alert_events", ["alert_id", "queued_at", "id"]),
    ("ix_scheduled_reports_name_id", "scheduled_reports", ["name", "id"]),
)
# The purge's expired files, without the rows kept after their bytes went.
PARTIAL = (("ix_artifacts_unpurged_expires_at", "artifacts", ["expires_at"], "purged_at IS NULL"),)
OLD = (
    ("ix_report_executions_report_id_queued_at", "report_executions", ["report_id", "queued_at"]),
    ("ix_alert_events_alert_id_queued_at", "alert_events", ["alert_id", "queued_at"]),
)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        for name, table, columns in NEW:
            op.create_index(name, table, columns)
        for name, table, columns, where in PARTIAL:
            op.create_index(name, table, columns, sqlite_where=sa.text(where))
        for name, table, _ in OLD:
            op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        for name, table, columns in NEW:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an invalid one from an interrupted build
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({', '.join(columns)})")
        for name, table, columns, where in PARTIAL:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({', '.join(columns)}) WHERE {where}")
        for name, _, _ in OLD:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    for name, table, columns in OLD:
        op.create_index(name, table, columns)
    for name, table, _ in NEW:
        op.drop_index(name, table_name=table)
    for name, table, _, _ in PARTIAL:
        op.drop_index(name, table_name=table)
