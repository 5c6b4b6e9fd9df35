"""What a run or an alert event says, before any channel formats it.

Email, webhook, Slack and Teams all start from one `Notification`: the same title, times,
numbers, first rows of each section, links and error, so every channel tells the same story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Event types a receiver sees (the webhook's `type`).
REPORT_DELIVERED = "report.delivered"
REPORT_TEST = "report.test"
REPORT_FAILED = "report.failed"
ALERT_EVENTS = {"triggered": "alert.triggered", "recovered": "alert.recovered", "error": "alert.error"}
EVENT_TYPES = (REPORT_DELIVERED, REPORT_TEST, REPORT_FAILED, *ALERT_EVENTS.values(), "destination.test")


@dataclass(frozen=True)
class Section:
    """One query's result (a report's query, or one dashboard widget): its true row count and first rows."""

    title: str
    row_count: int | None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()  # already formatted in the report's locale
    align: tuple[str, ...] = ()  # "left" | "right" per column (numbers right)
    charts: tuple[dict, ...] = ()  # Vega-Lite specs (shared.charts): PNG in emails and Slack, SVG in the PDF
    chart_alt: str = ""  # the charts' text alternative
    truncated: bool = False  # the query was cut at the report row limit
    filters: tuple[str, ...] = ()  # in words, in the report's language

    @property
    def cut(self) -> bool:
        return self.row_count is not None and self.row_count > len(self.rows)


@dataclass(frozen=True)
class FileLink:
    filename: str
    format: str
    size: int
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Notification:
    type: str  # one of EVENT_TYPES
    subject: str  # one line: the email subject, the chat message's title
    headline: str  # one sentence saying what happened
    name: str  # the report's or alert's name
    object_kind: str  # report | alert
    object_id: str
    run_id: str  # the execution id, or the alert event id
    status: str  # a run: rendered (files ready) | failed; an alert event: true | false | error
    timezone: str
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    row_count: int | None = None
    sections: tuple[Section, ...] = ()
    files: tuple[FileLink, ...] = ()
    open_url: str | None = None
    error: str | None = None
    facts: tuple[tuple[str, str], ...] = ()  # label/value lines (an alert's condition, observed value)
    locale: str = "en-US"  # the report's: numbers, dates and the boilerplate's language
    owner: str | None = None  # who scheduled it (name or address), for the email's footer
    description: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "error") or self.type == ALERT_EVENTS["error"]

    def local(self, moment: datetime | None) -> str:
        """A time in the report's own zone, as people read it: `2026-03-30 09:00 CEST`."""
        if moment is None:
            return ""
        from zoneinfo import ZoneInfo

        return moment.astimezone(ZoneInfo(self.timezone or "UTC")).strftime("%Y-%m-%d %H:%M %Z")

    @property
    def when(self) -> datetime | None:
        return self.scheduled_for or self.finished_at or self.started_at
