"""The render actor: translate the message, call the render domain."""

from __future__ import annotations

import dramatiq

from services.renderer import lanes
from services.renderer.alerting import evaluate_event
from services.renderer.render import RetryLater, render_execution
from shared import outages
from shared.context import WorkerContext
from shared.messaging import (
    EVALUATE_ALERT,
    QUEUE_RENDERER,
    QUEUE_RENDERER_HEAVY,
    RENDER_HEAVY_REPORT,
    RENDER_REPORT,
)


def register(broker: dramatiq.Broker, ctx: WorkerContext, **_options) -> dict[str, dramatiq.Actor]:
    settings = ctx.settings

    def render_report(execution_id: str) -> None:
        render_execution(ctx, execution_id)

    def render_heavy_report(execution_id: str) -> None:
        render_execution(ctx, execution_id, lane=lanes.HEAVY)

    render_options = dict(
        broker=broker,
        max_retries=outages.OUTAGE_RETRIES,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.render_time_limit_s * 1000,
        retry_when=outages.retry_when((RetryLater,), settings.render_max_retries),
    )
    actor = dramatiq.actor(render_report, actor_name=RENDER_REPORT, queue_name=QUEUE_RENDERER, **render_options)
    heavy = dramatiq.actor(
        render_heavy_report, actor_name=RENDER_HEAVY_REPORT, queue_name=QUEUE_RENDERER_HEAVY, **render_options
    )

    def evaluate_alert(event_id: str) -> None:
        evaluate_event(ctx, event_id)

    # A failed query is recorded on the event (state error), so only an outage of the application
    # database (which could not record anything) is retried.
    evaluator = dramatiq.actor(
        evaluate_alert,
        broker=broker,
        actor_name=EVALUATE_ALERT,
        queue_name=QUEUE_RENDERER,
        max_retries=outages.OUTAGE_RETRIES,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.render_time_limit_s * 1000,
        retry_when=outages.retry_when((), 0),
    )
    return {RENDER_REPORT: actor, RENDER_HEAVY_REPORT: heavy, EVALUATE_ALERT: evaluator}
