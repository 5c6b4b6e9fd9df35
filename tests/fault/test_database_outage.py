"""PostgreSQL goes away under a real `biapp scheduler` (a long soak: `make chaos`).

The application database is a private cluster (tests/fault/conftest.py), stopped for 90 s; the broker
is a private node that stays up. Ticks that run while the database is down fail and are dropped (the
next one catches up), the process stays up, and a report that fell due during the outage is
dispatched by the first tick after the database is back.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared.db import make_engine, make_session_factory, transaction
from shared.db.migrate import upgrade
from shared.messaging import QUEUE_RENDERER
from shared.models import ReportExecution
from tests.fault.support import current_children, start_scheduler, wait_for_scheduler
from tests.integration.seeding import add_report, seed_query
from tests.support import base_env, make_settings, wait_until

OUTAGE_S = 90


@pytest.mark.chaos
def test_scheduler_survives_a_90s_database_outage_and_dispatches_what_fell_due(
    private_postgres, private_rabbit, pg_data_database, tmp_path
):
    url = private_postgres.create_database("biapp")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    env = base_env(BIAPP_DATABASE_URL=url, BIAPP_BROKER_URL=private_rabbit.add_vhost("biapp"), BIAPP_LOG_FORMAT="json")
    owner, query = seed_query(factory, pg_data_database, make_settings(**env))

    scheduler = start_scheduler(env, tmp_path)
    try:
        wait_for_scheduler(scheduler, private_rabbit, "biapp")
        children = current_children(scheduler)
        # Due 70 s from now: beyond the dispatcher's 60 s look-ahead for every tick before the outage.
        with transaction(factory) as session:
            report = add_report(session, owner, query, now=datetime.now(UTC), name="Due in the outage")
            report.next_run_at = due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=70)
            report_id = report.id
        engine.dispose()

        private_postgres.stop()
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_S:
            assert scheduler.proc.poll() is None, scheduler.output()[-3000:]
            time.sleep(1)
        private_postgres.start()
        back_at = time.monotonic()

        def dispatched():
            assert scheduler.proc.poll() is None, scheduler.output()[-3000:]
            with factory() as session:
                return session.execute(sa.select(ReportExecution).filter_by(report_id=report_id)).scalars().all()

        [execution] = wait_until(dispatched, timeout=100, what="the report to be dispatched")
        print(f"\ndatabase down {OUTAGE_S}s; first dispatch {time.monotonic() - back_at:.1f}s after it was back")
        assert execution.scheduled_for == due and execution.status == "queued"
        wait_until(lambda: private_rabbit.queue_depth("biapp", QUEUE_RENDERER) >= 1, timeout=10, what="render message")
        assert current_children(scheduler) == children  # nothing had to be restarted
        assert scheduler.stop(timeout=60) == 0
    finally:
        scheduler.stop()
        engine.dispose()
