"""Send only if the data changed: a fingerprint of the rows a run read, compared with the last run people got.

The fingerprint is a sha256 over each section's column names and the `repr` of each row, in
order. `repr` is exact and stable for every type a row holds (str, int, float, Decimal, date,
datetime with its zone, bool, None), so the same rows hash the same; a changed value, order,
column or row count changes it. The baseline is the newest `success` or `partial` run that was
not a test: a test run reached only the person testing, not the recipients.
"""

from __future__ import annotations

import hashlib
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.models import ReportExecution, ScheduledReport
from shared.query.columns import ColumnInfo

DELIVERED = ("success", "partial")


class RowsDigest:
    """sha256 over every section's rows, fed one row at a time as the render streams them."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def begin_section(self, columns: list[ColumnInfo]) -> None:
        # A record separator no repr contains: moving a row from one section to the next changes the hash.
        self._sha.update(b"\x1e" + repr([c.name for c in columns]).encode() + b"\n")

    def row_adder(self):
        """The per-row call for the hot loop (repr escapes newlines and lone surrogates, so \\n delimits)."""
        update = self._sha.update

        def add(row: tuple) -> None:
            update(repr(row).encode() + b"\n")

        return add

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def unchanged_reason(
    session: Session, report: ScheduledReport, execution: ReportExecution, rows_hash: str
) -> str | None:
    """Why this run need not be sent (the report asks so and its rows hash as the last delivered run's),
    or None: send it. Test runs always send."""
    if not report.send_only_if_changed or execution.trigger == "test":
        return None
    last = session.execute(
        sa.select(ReportExecution.rows_hash, ReportExecution.scheduled_for)
        .where(
            ReportExecution.report_id == report.id,
            ReportExecution.status.in_(DELIVERED),
            ReportExecution.trigger != "test",
            ReportExecution.id != execution.id,
        )
        .order_by(ReportExecution.finished_at.desc(), ReportExecution.id.desc())
        .limit(1)
    ).first()
    if last is None or last.rows_hash != rows_hash:
        return None
    local = last.scheduled_for.astimezone(ZoneInfo(report.timezone or "UTC"))
    return f"The data has not changed since the last successful run ({local:%Y-%m-%d %H:%M} {local.tzname()})."
