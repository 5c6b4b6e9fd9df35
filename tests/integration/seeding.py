"""Rows most pipeline tests start from: an analyst, a data source on the data database, a query, a report."""

from __future__ import annotations

import uuid

from shared import users
from shared.config import Settings
from shared.db import transaction
from shared.models import DataSource, EmailConfig, SavedQuery, ScheduledReport
from shared.reports import apply_changes
from shared.security.crypto import SecretBox
from tests.conftest import PgDataDatabase

DAILY_0900 = {"frequency": "daily", "time": "09:00", "timezone": "UTC"}


def source_on_data_database(data: PgDataDatabase, settings: Settings | None = None, **fields) -> DataSource:
    """A PostgreSQL data source on the data database, logged in as its reader (not yet added to a session).

    Never the application database, never a superuser: the same rules a real data source follows.
    """
    values = {"name": "Data DB", **data.source_fields(), "options": {}}
    if settings is not None:
        # The test server trusts local connections; a stored password still exercises decryption.
        values["password_encrypted"] = SecretBox(settings.fernet_keys).encrypt(data.password)
    values.update(fields)
    return DataSource(**values)


def seed_query(
    factory, data: PgDataDatabase, settings, *, sql="select 1 as one", smtp=None
) -> tuple[uuid.UUID, uuid.UUID]:
    """An analyst, a PostgreSQL data source on the data database (as its reader) and a raw SQL saved query."""
    with transaction(factory) as session:
        owner = users.create_user(session, email="ana@example.com", password="correct horse battery", role="analyst")
        if smtp is not None:
            session.add(
                EmailConfig(
                    is_system_default=True,
                    host=smtp.host,
                    port=smtp.port,
                    security="none",
                    from_address="reports@example.com",
                )
            )
        source = source_on_data_database(data, settings)
        session.add(source)
        session.flush()
        query = SavedQuery(name="Numbers", kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
        session.add(query)
        session.flush()
        return owner.id, query.id


def add_report(session, owner_id, query_id, *, now, schedule=DAILY_0900, name="Report", **fields) -> ScheduledReport:
    report = ScheduledReport(owner_id=owner_id, is_active=True)
    data = {
        "name": name,
        "saved_query_id": query_id,
        "dashboard_id": None,
        "schedule": schedule,
        "recipients": ["a@example.com"],
        "cc": [],
        "formats": ["csv"],
        "subject": "{{report_name}} {{date}}",
        "body": None,
        "send_if_empty": True,
        "is_active": True,
    }
    data.update(fields)
    apply_changes(report, data, now)
    session.add(report)
    session.flush()
    return report
