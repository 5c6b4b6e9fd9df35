"""The demo a new user starts with, the machine's time zone it is scheduled in, and scheduler lag in the logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.demo import MAIN_REPORT, RETIRED_REPORT, seed_demo
from services.scheduler.dispatch import dispatch_due_reports
from shared.clock import FixedClock, machine_zone_name
from shared.context import build_context
from shared.db import make_engine, make_session_factory, transaction
from shared.messaging import RecordingPublisher
from shared.models import Dashboard, SavedQuery, ScheduledReport
from shared.reports import apply_changes
from tests.support import make_settings


@pytest.fixture
def demo(sqlite_url, tmp_path):
    (tmp_path / "sqlite").mkdir()
    settings = make_settings(BIAPP_DATABASE_URL=sqlite_url, BIAPP_SQLITE_ROOT=str(tmp_path / "sqlite"))
    return settings, make_session_factory(make_engine(sqlite_url)), tmp_path


def _seed(demo):
    settings, factory, tmp_path = demo
    return seed_demo(factory, settings, smtp_host="127.0.0.1", smtp_port=2525, data_dir=tmp_path)


def test_the_demo_report_sends_the_dashboard_daily_at_eight_in_the_machines_zone(demo):
    seeded = _seed(demo)

    assert seeded.report_is_new and seeded.email == "admin@example.com" and seeded.password
    with demo[1]() as session:
        report = session.get(ScheduledReport, seeded.report_id)
        dashboard = session.get(Dashboard, report.dashboard_id)
        names = set(session.execute(sa.select(ScheduledReport.name)).scalars())
        assert report.name == MAIN_REPORT and dashboard.name == "Sales overview"
        assert {w.chart for w in dashboard.widgets} >= {"bar", "line"}
        assert report.formats == ["xlsx", "pdf", "csv"]
        assert report.schedule == {"frequency": "daily", "time": "08:00", "timezone": machine_zone_name()}
        assert report.is_active and report.next_run_at is not None
    assert names == {MAIN_REPORT, "Demo: sales overview (Berlin)"}, "the every-minute report is gone"


def test_seeding_again_keeps_the_demo_and_starts_no_second_first_run(demo):
    first = _seed(demo)
    again = _seed(demo)
    assert again.report_id == first.report_id and again.report_is_new is False
    assert again.password == first.password


def test_the_every_minute_report_of_earlier_demos_is_removed(demo):
    settings, factory, _ = demo
    _seed(demo)
    with transaction(factory) as session:
        owner_id = session.execute(sa.select(ScheduledReport.owner_id)).scalars().first()
        query = session.execute(sa.select(SavedQuery).where(SavedQuery.name == "Revenue by region")).scalar_one()
        old = ScheduledReport(owner_id=owner_id, is_active=True)
        schedule = {"frequency": "cron", "cron": "* * * * *", "timezone": "Europe/Berlin"}
        fields = {"name": RETIRED_REPORT, "saved_query_id": query.id, "schedule": schedule, "formats": ["csv"]}
        apply_changes(old, {**fields, "recipients": ["cfo@example.com"]}, datetime.now(UTC))
        session.add(old)

    _seed(demo)

    with factory() as session:
        assert session.execute(sa.select(ScheduledReport).where(ScheduledReport.name == RETIRED_REPORT)).first() is None


@pytest.mark.parametrize(
    ("link", "timezone_file", "expected"),
    [
        ("/usr/share/zoneinfo/Europe/Berlin", None, "Europe/Berlin"),
        ("/usr/share/zoneinfo/Etc/UTC", None, "UTC"),
        (None, "America/New_York\n", "America/New_York"),
        (None, "Not/AZone\n", "UTC"),
        (None, None, "UTC"),
    ],
)
def test_the_machines_zone_is_read_from_etc_localtime_or_etc_timezone(tmp_path, link, timezone_file, expected):
    localtime, zone_file = tmp_path / "localtime", tmp_path / "timezone"
    if link:
        target = tmp_path / link.lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(b"TZif")
        localtime.symlink_to(target)
    if timezone_file:
        zone_file.write_text(timezone_file)
    assert machine_zone_name(localtime, zone_file) == expected


def test_a_run_claimed_ahead_of_its_time_is_logged_with_no_negative_lag(demo, caplog):
    settings, factory, _ = demo
    now = datetime(2024, 6, 12, 8, 59, 20, tzinfo=UTC)
    _seed(demo)
    with transaction(factory) as session:
        report = session.execute(sa.select(ScheduledReport).where(ScheduledReport.name == MAIN_REPORT)).scalar_one()
        report.next_run_at = now + timedelta(seconds=40)
    ctx = build_context(settings, RecordingPublisher(), clock=FixedClock(now), session_factory=factory)

    with caplog.at_level(logging.INFO, logger="services.scheduler.dispatch"):
        [(_, delay_ms)] = dispatch_due_reports(ctx)

    assert delay_ms == 40_000
    lags = [record.lag_s for record in caplog.records if hasattr(record, "lag_s")]
    assert lags == [0.0]
    assert any("starts in 40s" in record.getMessage() for record in caplog.records)
