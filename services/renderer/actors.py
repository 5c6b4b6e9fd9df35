"""The render actor: translate the message, call the render domain."""

from __future__ import annotations

import dramatiq

from services.renderer.alerting import evaluate_event
from services.renderer.render import RetryLater, render_execution
from shared import outages
from shared.context import WorkerContext
from shared.messaging import EVALUATE_ALERT, QUEUE_RENDERER, RENDER_REPORT


def register(broker: dramatiq.Broker, ctx: WorkerContext, **_options) -> dict[str, dramatiq.Actor]:
    settings = ctx.settings

    def render_report(execution_id: str) -> None:
        render_execution(ctx, execution_id)

    actor = dramatiq.actor(
        render_report,
        broker=broker,
        actor_name=RENDER_REPORT,
        queue_name=QUEUE_RENDERER,
        max_retries=outages.OUTAGE_RETRIES,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.render_time_limit_s * 1000,
        retry_when=outages.retry_when((RetryLater,), settings.render_max_retries),
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
    return {RENDER_REPORT: actor, EVALUATE_ALERT: evaluator}
