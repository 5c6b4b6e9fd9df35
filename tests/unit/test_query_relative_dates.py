"""Relative periods are resolved in the report's zone at the run's `now`."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from shared.clock import FixedClock
from shared.query.relative_dates import is_relative, resolve

# 23:30 UTC on 31 March is already 1 April, 12:30 in Auckland (UTC+13).
CLOCK = FixedClock(datetime(2024, 3, 31, 23, 30, tzinfo=UTC))
AUCKLAND = ZoneInfo("Pacific/Auckland")


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("today", date(2024, 4, 1), date(2024, 4, 2)),
        ("yesterday", date(2024, 3, 31), date(2024, 4, 1)),
        ("last_7_days", date(2024, 3, 26), date(2024, 4, 2)),
        ("last_30_days", date(2024, 3, 3), date(2024, 4, 2)),
        ("last_90_days", date(2024, 1, 3), date(2024, 4, 2)),
        ("last_1_days", date(2024, 4, 1), date(2024, 4, 2)),
        ("this_week", date(2024, 4, 1), date(2024, 4, 8)),
        ("previous_week", date(2024, 3, 25), date(2024, 4, 1)),
        ("week_to_date", date(2024, 4, 1), date(2024, 4, 2)),
        ("this_month", date(2024, 4, 1), date(2024, 5, 1)),
        ("previous_month", date(2024, 3, 1), date(2024, 4, 1)),
        ("month_to_date", date(2024, 4, 1), date(2024, 4, 2)),
        ("this_quarter", date(2024, 4, 1), date(2024, 7, 1)),
        ("previous_quarter", date(2024, 1, 1), date(2024, 4, 1)),
        ("quarter_to_date", date(2024, 4, 1), date(2024, 4, 2)),
        ("this_year", date(2024, 1, 1), date(2025, 1, 1)),
        ("previous_year", date(2023, 1, 1), date(2024, 1, 1)),
        ("year_to_date", date(2024, 1, 1), date(2024, 4, 2)),
    ],
)
def test_every_relative_period_resolves_in_the_reports_zone(name, start, end):
    period = resolve(name, now=CLOCK.now(), zone=AUCKLAND)
    assert (period.start, period.end) == (start, end)


def test_the_same_instant_is_still_march_in_utc():
    period = resolve("this_month", now=CLOCK.now(), zone=ZoneInfo("UTC"))
    assert (period.start, period.end) == (date(2024, 3, 1), date(2024, 4, 1))


def test_previous_month_in_january_is_last_december():
    period = resolve("previous_month", now=datetime(2024, 1, 15, 12, tzinfo=UTC), zone=AUCKLAND)
    assert (period.start, period.end) == (date(2023, 12, 1), date(2024, 1, 1))


def test_period_boundaries_are_local_midnights_across_a_dst_change():
    # Auckland leaves daylight time on 7 April 2024: the week spans two UTC offsets.
    start, end = resolve("this_week", now=datetime(2024, 4, 3, tzinfo=UTC), zone=AUCKLAND).datetimes(AUCKLAND)
    assert start.utcoffset().total_seconds() == 13 * 3600
    assert end.utcoffset().total_seconds() == 12 * 3600
    assert (start.hour, end.hour) == (0, 0)


def test_unknown_names_are_not_relative_periods():
    assert is_relative("last_7_days") and is_relative("previous_quarter")
    assert not is_relative("2024-01-01") and not is_relative("last_week_days") and not is_relative(7)
    with pytest.raises(ValueError):
        resolve("next_month", now=CLOCK.now(), zone=AUCKLAND)
