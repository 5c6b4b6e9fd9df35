"""When a report runs: next occurrences in the report's own time zone.

Rules users rely on:
* a daily 09:00 Europe/Berlin report runs at 09:00 local on both sides of a DST change;
* a local time inside a spring-forward gap runs at the first instant after the gap;
* a local time that happens twice (fall back) runs once, at its first occurrence;
* a day_of_month past the end of the month runs on the month's last day (-1 = last day).
Cron expressions are evaluated by cronsim on zone-aware local times, with the same rules.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

FREQUENCIES = ("daily", "weekly", "monthly", "cron")
# A day's number is its index: 0 is Monday, as Python's date.weekday() counts (and as stored schedules do).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAY_HINT = "0 (Monday) to 6 (Sunday), or mon, tue, wed, thu, fri, sat, sun"
_SEARCH_DAYS = 800  # long enough for "31st of every month" and leap-year edges


class ScheduleError(ValueError):
    """An invalid schedule; `field` names the offending key."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    frequency: str
    timezone: str = "UTC"
    time: time = time(9, 0)
    days_of_week: tuple[int, ...] = ()
    day_of_month: int | None = None
    cron: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_schedule(raw: dict) -> Schedule:
    """Validate a schedule as the API receives it; raise ScheduleError naming the field."""
    frequency = raw.get("frequency")
    if frequency not in FREQUENCIES:
        raise ScheduleError("frequency", f"must be one of {', '.join(FREQUENCIES)}")
    zone_name = check_zone(raw.get("timezone") or "UTC")
    at = time(9, 0)
    if frequency != "cron":
        at = _parse_time(raw.get("time"))
    days: tuple[int, ...] = ()
    day_of_month = None
    cron = None
    if frequency == "weekly":
        raw_days = raw.get("days_of_week") or []
        if not isinstance(raw_days, list) or not raw_days:
            raise ScheduleError("days_of_week", f"list at least one day: {WEEKDAY_HINT}")
        days = tuple(sorted({weekday_number(d) for d in raw_days}))
    if frequency == "monthly":
        day_of_month = raw.get("day_of_month")
        if (
            isinstance(day_of_month, bool)
            or not isinstance(day_of_month, int)
            or not (1 <= day_of_month <= 31 or day_of_month == -1)
        ):
            raise ScheduleError("day_of_month", "must be 1 to 31, or -1 for the last day of the month")
    if frequency == "cron":
        cron = raw.get("cron")
        if not isinstance(cron, str) or len(cron.split()) != 5:
            given = (
                f"{cron!r} has {len(cron.split())} fields" if isinstance(cron, str) else "a cron expression is required"
            )
            raise ScheduleError("cron", f"{given}: give five, minute hour day-of-month month day-of-week")
        try:
            CronSim(cron, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ScheduleError("cron", f"{cron!r} is not a valid cron expression: {exc}") from None
    return Schedule(frequency, zone_name, at, days, day_of_month, cron)


def parse_stored_schedule(raw: dict) -> Schedule:
    """parse_schedule for a stored schedule, parsed once per distinct value: thousands of reports share one."""
    return _parse_by_text(json.dumps(raw, sort_keys=True, default=str))


@lru_cache(maxsize=4096)
def _parse_by_text(text: str) -> Schedule:
    # A Schedule is frozen, so one instance may serve every caller; errors are not cached.
    return parse_schedule(json.loads(text))


def check_zone(name: object) -> str:
    """An IANA time zone name as given; ScheduleError("timezone") for anything else."""
    if not isinstance(name, str) or name not in _zones():
        raise ScheduleError("timezone", f"unknown IANA time zone {name!r}")
    return name


def weekday_number(value: object) -> int:
    """A day of the week as its number, from 0-6 or a name (`mon`, `Monday`, any case); ScheduleError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str):
        name = value.strip().lower()
        for names in (WEEKDAYS, _FULL_WEEKDAYS):
            if name in names:
                return names.index(name)
    raise ScheduleError("days_of_week", f"{value!r} is not a day: use {WEEKDAY_HINT}")


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


_ZONES: set[str] | None = None


def _parse_time(raw: object) -> time:
    if not isinstance(raw, str):
        raise ScheduleError("time", 'must be "HH:MM"')
    parts = raw.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ScheduleError("time", 'must be "HH:MM"')
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ScheduleError("time", f"{raw!r} is not a time of day")
    return time(hour, minute)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time, resolving gaps and folds as users expect."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == naive:
        return as_utc  # exists; fold=0 is the first of two occurrences
    # Inside a gap: run at the first instant after it, i.e. the transition itself.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = as_utc
    low, high = min(low, high), max(low, high)
    after_offset = zone.utcoffset(high.astimezone(zone).replace(tzinfo=None))
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == after_offset:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def _matches(schedule: Schedule, day: date) -> bool:
    if schedule.frequency == "daily":
        return True
    if schedule.frequency == "weekly":
        return day.weekday() in schedule.days_of_week
    last = calendar.monthrange(day.year, day.month)[1]
    wanted = last if schedule.day_of_month in (-1, None) else min(schedule.day_of_month, last)
    return day.day == wanted


def next_run(schedule: Schedule, after: datetime) -> datetime:
    """The first occurrence strictly after `after` (aware), in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = schedule.zone
    if schedule.frequency == "cron":
        local_after = after.astimezone(zone)
        candidate = next(iter(CronSim(schedule.cron, local_after)))
        result = candidate.astimezone(UTC)
        return result if result > after else next_run(schedule, after + timedelta(minutes=1))
    start = after.astimezone(zone).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        day = start + timedelta(days=offset)
        if _matches(schedule, day):
            instant = local_instant(day, schedule.time, zone)
            if instant > after:
                return instant
    raise ValueError("schedule has no occurrence in the search window")


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    runs: list[datetime] = []
    cursor = after
    for _ in range(count):
        cursor = next_run(schedule, cursor)
        runs.append(cursor)
    return runs
