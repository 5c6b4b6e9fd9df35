"""Scheduler actors: one every-minute tick; the schedules themselves live in the database."""

from __future__ import annotations

import dramatiq
from periodiq import cron

from services.scheduler.dispatch import dispatch_due_reports
from shared.context import WorkerContext
from shared.messaging import QUEUE_SCHEDULER


def register(broker: dramatiq.Broker, ctx: WorkerContext, **_options) -> dict[str, dramatiq.Actor]:
    def dispatch_tick() -> None:
        dispatch_due_reports(ctx)

    dispatch = dramatiq.actor(
        dispatch_tick,
        broker=broker,
        actor_name="dispatch_due_reports",
        queue_name=QUEUE_SCHEDULER,
        periodic=cron("* * * * *"),
        max_retries=0,  # the next tick retries anyway
        time_limit=55_000,
    )
    return {"dispatch_due_reports": dispatch}
