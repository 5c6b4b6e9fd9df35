"""When reports run: property tests over DST zones and table tests for the known edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schedules import ScheduleError, next_run, parse_schedule, upcoming

DST_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo", "Asia/Kolkata"]

zones = st.sampled_from(DST_ZONES)
wall_times = st.builds(time, st.integers(0, 23), st.integers(0, 59))
starts = st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def _exists(day: date, at: time, zone: ZoneInfo) -> bool:
    """False when the wall time falls in that day's spring-forward gap."""
    naive = datetime.combine(day, at)
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def _daily(zone: str, at: time) -> dict:
    return {"frequency": "daily", "time": f"{at:%H:%M}", "timezone": zone}


def _check_wall_time(run: datetime, at: time, zone: ZoneInfo) -> None:
    local = run.astimezone(zone)
    if _exists(local.date(), at, zone):
        assert local.time() == at, f"{run} is {local}, wanted {at}"
    else:
        # Inside a gap: the first instant after it, i.e. the first valid minute past the wall time.
        assert local.time() > at
        assert not _exists(
            local.date(), (datetime.combine(local.date(), local.time()) - timedelta(minutes=1)).time(), zone
        )


@settings(max_examples=150, deadline=None)
@given(zone=zones, at=wall_times, start=starts)
def test_daily_runs_keep_local_wall_time_once_per_local_day(zone, at, start):
    schedule = parse_schedule(_daily(zone, at))
    tz = ZoneInfo(zone)
    runs = upcoming(schedule, start, 40)
    assert all(a < b for a, b in zip(runs, runs[1:], strict=False)), "runs must strictly increase"
    days = [r.astimezone(tz).date() for r in runs]
    assert len(set(days)) == len(days), "never two runs in one local day"
    assert all((b - a).days == 1 for a, b in zip(days, days[1:], strict=False)), "no local day is skipped"
    for run in runs:
        _check_wall_time(run, at, tz)


@settings(max_examples=100, deadline=None)
@given(zone=zones, at=wall_times, start=starts)
def test_the_next_run_after_a_run_is_never_the_same_instant(zone, at, start):
    schedule = parse_schedule(_daily(zone, at))
    first = next_run(schedule, start)
    assert first > start
    assert next_run(schedule, first) > first
    # Asking again one second before a run gives that same run: nothing is skipped.
    assert next_run(schedule, first - timedelta(seconds=1)) == first


@settings(max_examples=100, deadline=None)
@given(zone=zones, at=wall_times, start=starts, days=st.sets(st.integers(0, 6), min_size=1))
def test_weekly_runs_fall_only_on_chosen_local_weekdays(zone, at, start, days):
    raw = {"frequency": "weekly", "time": f"{at:%H:%M}", "days_of_week": sorted(days), "timezone": zone}
    tz = ZoneInfo(zone)
    runs = upcoming(parse_schedule(raw), start, 20)
    assert all(a < b for a, b in zip(runs, runs[1:], strict=False))
    for run in runs:
        assert run.astimezone(tz).weekday() in days
        _check_wall_time(run, at, tz)


@settings(max_examples=100, deadline=None)
@given(zone=zones, at=wall_times, start=starts, day=st.sampled_from([1, 15, 28, 29, 30, 31, -1]))
def test_monthly_runs_once_a_month_clamped_to_the_last_day(zone, at, start, day):
    raw = {"frequency": "monthly", "time": f"{at:%H:%M}", "day_of_month": day, "timezone": zone}
    tz = ZoneInfo(zone)
    runs = upcoming(parse_schedule(raw), start, 14)
    months = [(r.astimezone(tz).year, r.astimezone(tz).month) for r in runs]
    assert len(set(months)) == len(months)
    for run in runs:
        local = run.astimezone(tz)
        last = (local.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert local.day == (last.day if day == -1 else min(day, last.day))


@settings(max_examples=100, deadline=None)
@given(zone=zones, start=starts, expr=st.sampled_from(["0 9 * * 1-5", "30 2 * * *", "*/30 * * * *", "15 1 1 * *"]))
def test_cron_runs_strictly_increase(zone, start, expr):
    runs = upcoming(parse_schedule({"frequency": "cron", "cron": expr, "timezone": zone}), start, 30)
    assert runs[0] > start
    assert all(a < b for a, b in zip(runs, runs[1:], strict=False))


def _local(schedule: dict, after: datetime, count: int) -> list[str]:
    parsed = parse_schedule(schedule)
    return [r.astimezone(parsed.zone).isoformat() for r in upcoming(parsed, after, count)]


BERLIN_0230 = {"frequency": "daily", "time": "02:30", "timezone": "Europe/Berlin"}


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        pytest.param(
            BERLIN_0230,
            datetime(2024, 3, 30, 12, tzinfo=UTC),
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
            id="spring-forward gap runs at 03:00, the first instant after it",
        ),
        pytest.param(
            BERLIN_0230,
            datetime(2024, 10, 26, 12, tzinfo=UTC),
            ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
            id="fall-back runs once, at the first 02:30",
        ),
        pytest.param(
            {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
            datetime(2024, 3, 30, 12, tzinfo=UTC),
            ["2024-03-31T09:00:00+02:00", "2024-04-01T09:00:00+02:00"],
            id="daily 09:00 stays 09:00 across spring-forward",
        ),
        pytest.param(
            {"frequency": "monthly", "time": "09:00", "day_of_month": 31, "timezone": "Europe/Berlin"},
            datetime(2024, 2, 1, tzinfo=UTC),
            ["2024-02-29T09:00:00+01:00", "2024-03-31T09:00:00+02:00", "2024-04-30T09:00:00+02:00"],
            id="day 31 in February of a leap year",
        ),
        pytest.param(
            {"frequency": "monthly", "time": "09:00", "day_of_month": 31, "timezone": "Europe/Berlin"},
            datetime(2023, 2, 1, tzinfo=UTC),
            ["2023-02-28T09:00:00+01:00", "2023-03-31T09:00:00+02:00"],
            id="day 31 in February of a non-leap year",
        ),
        pytest.param(
            {"frequency": "monthly", "time": "07:00", "day_of_month": -1, "timezone": "America/New_York"},
            datetime(2023, 1, 31, 13, tzinfo=UTC),
            ["2023-02-28T07:00:00-05:00", "2023-03-31T07:00:00-04:00"],
            id="-1 is the last day of the month",
        ),
        pytest.param(
            {"frequency": "weekly", "time": "08:15", "days_of_week": [4, 0, 2], "timezone": "America/New_York"},
            datetime(2024, 6, 3, 12, tzinfo=UTC),  # Monday 08:00 New York
            [
                "2024-06-03T08:15:00-04:00",
                "2024-06-05T08:15:00-04:00",
                "2024-06-07T08:15:00-04:00",
                "2024-06-10T08:15:00-04:00",
            ],
            id="weekly on Monday, Wednesday and Friday",
        ),
        pytest.param(
            {"frequency": "weekly", "time": "10:00", "days_of_week": [6], "timezone": "Europe/Berlin"},
            datetime(2024, 6, 3, tzinfo=UTC),
            ["2024-06-09T10:00:00+02:00", "2024-06-16T10:00:00+02:00"],
            id="weekly on Sunday",
        ),
        pytest.param(
            {"frequency": "cron", "cron": "0 9 * * 1-5", "timezone": "Asia/Kolkata"},
            datetime(2024, 6, 7, 2, tzinfo=UTC),  # Friday 07:30 in Kolkata
            ["2024-06-07T09:00:00+05:30", "2024-06-10T09:00:00+05:30", "2024-06-11T09:00:00+05:30"],
            id="cron weekdays 09:00 east of UTC skips the weekend",
        ),
        pytest.param(
            {"frequency": "cron", "cron": "0 9 * * 0", "timezone": "Asia/Kolkata"},
            datetime(2024, 6, 7, tzinfo=UTC),
            ["2024-06-09T09:00:00+05:30"],
            id="cron Sunday written as 0 fires",
        ),
        pytest.param(
            {"frequency": "daily", "time": "02:15", "timezone": "Australia/Lord_Howe"},
            datetime(2024, 10, 5, tzinfo=UTC),
            ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"],
            id="Lord Howe's 30-minute spring-forward gap",
        ),
    ],
)
def test_known_edges(schedule, after, expected):
    assert _local(schedule, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"frequency": "daily", "time": "25:00"}, "time"),
        ({"frequency": "daily", "time": "9am"}, "time"),
        ({"frequency": "daily", "time": "09:00", "timezone": "Mars/Olympus"}, "timezone"),
        ({"frequency": "monthly", "time": "09:00", "day_of_month": 0}, "day_of_month"),
        ({"frequency": "monthly", "time": "09:00", "day_of_month": 32}, "day_of_month"),
        ({"frequency": "weekly", "time": "09:00", "days_of_week": []}, "days_of_week"),
        ({"frequency": "weekly", "time": "09:00", "days_of_week": [7]}, "days_of_week"),
        ({"frequency": "cron", "cron": "61 * * * *"}, "cron"),
        ({"frequency": "cron", "cron": "0 0 31 2 *"}, "cron"),
        ({"frequency": "cron", "cron": "* * *"}, "cron"),
        ({"frequency": "hourly"}, "frequency"),
    ],
)
def test_invalid_schedules_name_the_field(raw, field):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(raw)
    assert caught.value.field == field


def test_next_run_refuses_naive_times():
    with pytest.raises(ValueError):
        next_run(parse_schedule(BERLIN_0230), datetime(2024, 1, 1))
