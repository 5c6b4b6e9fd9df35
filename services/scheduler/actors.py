"""Scheduler actors: every-minute ticks; the schedules themselves live in the database.

periodiq sends each tick from every scheduler replica and keeps no state, so every
actor here is idempotent and catches up by itself (see DESIGN §8).
"""

from __future__ import annotations

import dramatiq
from periodiq import cron

from services.scheduler.alerts import dispatch_due_alerts
from services.scheduler.dispatch import dispatch_due_reports
from services.scheduler.purge import purge_expired
from services.scheduler.sweep import sweep_stuck_executions
from shared.context import WorkerContext
from shared.messaging import QUEUE_SCHEDULER


def register(broker: dramatiq.Broker, ctx: WorkerContext, **_options) -> dict[str, dramatiq.Actor]:
    def dispatch_tick() -> None:
        dispatch_due_reports(ctx)

    def alerts_tick() -> None:
        dispatch_due_alerts(ctx)

    def sweep_tick() -> None:
        sweep_stuck_executions(ctx)

    def purge_tick() -> None:
        purge_expired(ctx)

    # The next tick retries anyway, so none of these retry on their own.
    common = {"broker": broker, "queue_name": QUEUE_SCHEDULER, "max_retries": 0}
    return {
        "dispatch_due_reports": dramatiq.actor(
            dispatch_tick, actor_name="dispatch_due_reports", periodic=cron("* * * * *"), time_limit=55_000, **common
        ),
        "dispatch_due_alerts": dramatiq.actor(
            alerts_tick, actor_name="dispatch_due_alerts", periodic=cron("* * * * *"), time_limit=55_000, **common
        ),
        "sweep_stuck_executions": dramatiq.actor(
            sweep_tick, actor_name="sweep_stuck_executions", periodic=cron("* * * * *"), time_limit=55_000, **common
        ),
        # Daily at 03:17 in the scheduler's zone; a missed day is caught up by the next.
        "purge_expired": dramatiq.actor(
            purge_tick, actor_name="purge_expired", periodic=cron("17 3 * * *"), time_limit=600_000, **common
        ),
    }
