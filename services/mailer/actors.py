"""The deliver actor: translate the message, call the delivery domain."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import TimeLimitExceeded

from services.mailer.alert_mail import RetryAlertDelivery, deliver_event
from services.mailer.deliver import RetryDelivery, deliver_execution
from services.mailer.transport import SmtplibTransport, Transport
from shared.context import WorkerContext
from shared.messaging import QUEUE_MAILER


def register(
    broker: dramatiq.Broker, ctx: WorkerContext, transport: Transport | None = None, **_options
) -> dict[str, dramatiq.Actor]:
    settings = ctx.settings
    smtp = transport or SmtplibTransport()

    def deliver_report(execution_id: str) -> None:
        deliver_execution(ctx, smtp, execution_id)

    def retry_when(retries: int, exc: BaseException) -> bool:
        # Only "some recipients are still pending" (or a send cut off by the time limit) is worth
        # another go; the ledger makes the retry send to those recipients only.
        return isinstance(exc, RetryDelivery | TimeLimitExceeded) and retries < settings.mail_max_retries

    actor = dramatiq.actor(
        deliver_report,
        broker=broker,
        actor_name="deliver_report",
        queue_name=QUEUE_MAILER,
        max_retries=settings.mail_max_retries,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.mail_time_limit_s * 1000,
        retry_when=retry_when,
    )

    def deliver_alert(event_id: str) -> None:
        deliver_event(ctx, smtp, event_id)

    alert_actor = dramatiq.actor(
        deliver_alert,
        broker=broker,
        actor_name="deliver_alert",
        queue_name=QUEUE_MAILER,
        max_retries=settings.mail_max_retries,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.mail_time_limit_s * 1000,
        retry_when=lambda retries, exc: isinstance(exc, RetryAlertDelivery) and retries < settings.mail_max_retries,
    )
    return {"deliver_report": actor, "deliver_alert": alert_actor}
