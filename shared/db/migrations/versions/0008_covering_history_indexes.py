"""history filters read from the indexes: history indexes carry status and trigger; a report's runs by status

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:00:00

A filtered history page (`status=failed`, `trigger=test`) walks its history index newest first and keeps the
rows that match; so does the count beside it, up to its cap. With status and trigger included in the index
(INCLUDE: carried, not sorted), both are index-only: a rare status no longer means a heap fetch for every
run skipped. A report's runs of one status, the commonest filter, have an index of their own, as do
everyone's (status, queued_at, id) carrying report_id and trigger, which replaces (status, queued_at) and
serves what that one did. A user's
own reports by name serve their reports list and the set of reports whose runs they may see.

As in 0006, PostgreSQL builds them CONCURRENTLY (runs keep being written meanwhile); an index left invalid
by an interrupted build is dropped and built again by running the migration again.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (name, table, key columns, included columns): built under a temporary name, then swapped in
REBUILT = (
    (
        "ix_report_executions_report_history",
        "report_executions",
        ["report_id", "queued_at", "id"],
        ["status", "trigger"],
    ),
    ("ix_report_executions_history", "report_executions", ["queued_at", "id"], ["report_id", "status", "trigger"]),
    ("ix_alert_events_alert_history", "alert_events", ["alert_id", "queued_at", "id"], ["state", "trigger"]),
)
# (name, table, key columns, included columns): new
NEW_COVERING = (
    (
        "ix_report_executions_status_history",
        "report_executions",
        ["status", "queued_at", "id"],
        ["report_id", "trigger"],
    ),
)
NEW = (
    ("ix_report_executions_report_status", "report_executions", ["report_id", "status", "queued_at", "id"]),
    # a user's own reports, by name: their reports list, and the reports whose runs they may see
    ("ix_scheduled_reports_owner_name", "scheduled_reports", ["owner_id", "name", "id"]),
)
OLD = (("ix_report_executions_status_queued_at", "report_executions", ["status", "queued_at"]),)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":  # SQLite has no INCLUDE: the same keys serve
        for name, table, columns in NEW + tuple(row[:3] for row in NEW_COVERING):
            op.create_index(name, table, columns)
        for name, table, _ in OLD:
            op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        for name, table, columns, included in REBUILT:
            # The new index is built beside the old one, which keeps serving until it is dropped.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
            keys, carried = ", ".join(columns), ", ".join(included)
            op.execute(f"CREATE INDEX CONCURRENTLY {name}_new ON {table} ({keys}) INCLUDE ({carried})")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")
        for name, table, columns in NEW:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({', '.join(columns)})")
        for name, table, columns, included in NEW_COVERING:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            keys, carried = ", ".join(columns), ", ".join(included)
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({keys}) INCLUDE ({carried})")
        for name, _, _ in OLD:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    for name, table, columns in OLD:
        op.create_index(name, table, columns)
    for name, table, _ in NEW + tuple(row[:3] for row in NEW_COVERING):
        op.drop_index(name, table_name=table)
    for name, table, columns, _ in REBUILT:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
