"""The deliver actor: translate the message, call the delivery domain."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import TimeLimitExceeded

from services.mailer.alert_mail import RetryAlertDelivery, deliver_event
from services.mailer.channels import build_channels
from services.mailer.deliver import RetryDelivery, deliver_execution
from services.mailer.transport import SmtplibTransport, Transport
from shared import outages
from shared.context import WorkerContext
from shared.messaging import DELIVER_ALERT, DELIVER_REPORT, QUEUE_MAILER


def register(
    broker: dramatiq.Broker, ctx: WorkerContext, transport: Transport | None = None, **_options
) -> dict[str, dramatiq.Actor]:
    settings = ctx.settings
    smtp = transport or SmtplibTransport()
    channels = build_channels(settings, smtp)

    def deliver_report(execution_id: str) -> None:
        deliver_execution(ctx, smtp, execution_id, channels)

    # "Some recipients are still pending" (or a send cut off by the time limit) is worth another go;
    # the ledger makes the retry send to those recipients only, and BIAPP_MAIL_RETRY_WINDOW_S (checked
    # by the delivery itself) decides when to give up, so the count here is only a backstop.
    retry_when = outages.retry_when((RetryDelivery, TimeLimitExceeded), outages.OUTAGE_RETRIES)

    actor = dramatiq.actor(
        deliver_report,
        broker=broker,
        actor_name=DELIVER_REPORT,
        queue_name=QUEUE_MAILER,
        max_retries=outages.OUTAGE_RETRIES,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.mail_time_limit_s * 1000,
        retry_when=retry_when,
    )

    def deliver_alert(event_id: str) -> None:
        deliver_event(ctx, smtp, event_id, channels)

    alert_actor = dramatiq.actor(
        deliver_alert,
        broker=broker,
        actor_name=DELIVER_ALERT,
        queue_name=QUEUE_MAILER,
        max_retries=outages.OUTAGE_RETRIES,
        min_backoff=5_000,
        max_backoff=settings.max_backoff_s * 1000,
        time_limit=settings.mail_time_limit_s * 1000,
        retry_when=outages.retry_when((RetryAlertDelivery, TimeLimitExceeded), outages.OUTAGE_RETRIES),
    )
    return {DELIVER_REPORT: actor, DELIVER_ALERT: alert_actor}
