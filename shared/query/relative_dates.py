"""Relative date periods (`last_7_days`, `previous_month`, …) resolved in a time zone.

A period is a half-open range of local dates `[start, end)`: "this_month" on
15 March is `[1 March, 1 April)`. It is resolved when the query runs, with the
report's time zone and the run's `now`, so a Monday-morning report in Tokyo and
one in Berlin each see their own "yesterday". Periods that name a number of days
include today: `last_7_days` is today and the six days before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_FIXED = (
    "today",
    "yesterday",
    "this_week",
    "previous_week",
    "this_month",
    "previous_month",
    "this_quarter",
    "previous_quarter",
    "this_year",
    "previous_year",
    "week_to_date",
    "month_to_date",
    "quarter_to_date",
    "year_to_date",
)
_LAST_N_DAYS = re.compile(r"^last_(\d{1,4})_days$")
RELATIVE_PERIODS = (*_FIXED, "last_7_days", "last_30_days", "last_90_days", "last_365_days", "last_<n>_days")


@dataclass(frozen=True)
class Period:
    """Local dates `[start, end)` of a relative period."""

    start: date
    end: date

    def datetimes(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The period as aware datetimes at local midnight (DST-correct)."""
        return (datetime.combine(self.start, time(), zone), datetime.combine(self.end, time(), zone))


def is_relative(value: object) -> bool:
    return isinstance(value, str) and (value in _FIXED or _LAST_N_DAYS.match(value) is not None)


def _month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _quarter_start(day: date, quarters_back: int = 0) -> date:
    first = _month_start(day, (day.month - 1) % 3)
    return _month_start(first, 3 * quarters_back)


def resolve(name: str, *, now: datetime, zone: ZoneInfo) -> Period:
    """The local-date range `name` means at `now` in `zone`; ValueError for an unknown name."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(zone).date()
    tomorrow = today + timedelta(days=1)
    week = today - timedelta(days=today.weekday())  # weeks start on Monday (ISO 8601)
    match = _LAST_N_DAYS.match(name)
    if match:
        days = int(match.group(1))
        if days < 1:
            raise ValueError("last_<n>_days needs n >= 1")
        return Period(today - timedelta(days=days - 1), tomorrow)
    periods = {
        "today": lambda: Period(today, tomorrow),
        "yesterday": lambda: Period(today - timedelta(days=1), today),
        "this_week": lambda: Period(week, week + timedelta(days=7)),
        "previous_week": lambda: Period(week - timedelta(days=7), week),
        "this_month": lambda: Period(_month_start(today), _month_start(today, -1)),
        "previous_month": lambda: Period(_month_start(today, 1), _month_start(today)),
        "this_quarter": lambda: Period(_quarter_start(today), _quarter_start(today, -1)),
        "previous_quarter": lambda: Period(_quarter_start(today, 1), _quarter_start(today)),
        "this_year": lambda: Period(date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "previous_year": lambda: Period(date(today.year - 1, 1, 1), date(today.year, 1, 1)),
        "week_to_date": lambda: Period(week, tomorrow),
        "month_to_date": lambda: Period(_month_start(today), tomorrow),
        "quarter_to_date": lambda: Period(_quarter_start(today), tomorrow),
        "year_to_date": lambda: Period(date(today.year, 1, 1), tomorrow),
    }
    if name not in periods:
        raise ValueError(f"unknown relative date {name!r}")
    return periods[name]()
