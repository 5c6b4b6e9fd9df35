"""The only way any part of BIApp Reports sends work to another part.

Messages carry ids and plain JSON, never rows or secrets; they are sent after the
commit that created the work. The API publishes by actor *name* and queue, so it
never imports renderer or mailer code (nor WeasyPrint).
"""

from __future__ import annotations

import logging
from typing import Protocol

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from shared.config import Settings

QUEUE_SCHEDULER = "biapp.scheduler"
QUEUE_RENDERER = "biapp.renderer"
QUEUE_MAILER = "biapp.mailer"

# Actor names: the only spelling of each, used by the services that register them and by the
# parts that publish to them.
DISPATCH_DUE_REPORTS = "dispatch_due_reports"
DISPATCH_DUE_ALERTS = "dispatch_due_alerts"
SWEEP_STUCK_EXECUTIONS = "sweep_stuck_executions"
PURGE_EXPIRED = "purge_expired"
RENDER_REPORT = "render_report"
EVALUATE_ALERT = "evaluate_alert"
DELIVER_REPORT = "deliver_report"
DELIVER_ALERT = "deliver_alert"

# actor name -> queue; every actor in every service is listed here.
ACTOR_QUEUES: dict[str, str] = {
    DISPATCH_DUE_REPORTS: QUEUE_SCHEDULER,
    SWEEP_STUCK_EXECUTIONS: QUEUE_SCHEDULER,
    PURGE_EXPIRED: QUEUE_SCHEDULER,
    DISPATCH_DUE_ALERTS: QUEUE_SCHEDULER,
    RENDER_REPORT: QUEUE_RENDERER,
    EVALUATE_ALERT: QUEUE_RENDERER,
    DELIVER_REPORT: QUEUE_MAILER,
    DELIVER_ALERT: QUEUE_MAILER,
}

# What recovers a message whose publish failed after its commit, by actor: said in the log line.
RECOVERED_BY: dict[str, str] = {
    RENDER_REPORT: "the sweeper re-enqueues runs left queued",
    DELIVER_REPORT: "the sweeper re-sends runs left rendered or sending",
    EVALUATE_ALERT: "the next alert tick re-enqueues events left pending",
    DELIVER_ALERT: "the next alert tick re-enqueues deliveries left pending",
}

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str: ...


def build_broker(settings: Settings, middleware: list[Middleware] | None = None) -> dramatiq.Broker:
    """The broker for this process: RabbitMQ with publisher confirms, or in-memory."""
    if settings.broker_is_memory:
        broker: dramatiq.Broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    else:
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=middleware)
    for queue in (QUEUE_SCHEDULER, QUEUE_RENDERER, QUEUE_MAILER):
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


class BrokerPublisher:
    """Publishes by actor name; the receiving service registers the actor itself."""

    def __init__(self, broker: dramatiq.Broker):
        self.broker = broker

    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str:
        queue = ACTOR_QUEUES[actor_name]
        message = dramatiq.Message(queue_name=queue, actor_name=actor_name, args=tuple(args), kwargs={}, options={})
        sent = self.broker.enqueue(message, delay=delay_ms)
        log.debug("published %s to %s", actor_name, queue, extra={"message_id": sent.message_id})
        return sent.message_id


def publish_after_commit(
    publisher: Publisher, actor_name: str, object_id: object, *, delay_ms: int | None = None
) -> bool:
    """Send one message for work that is already committed; False (and a log line) when the broker refused.

    A lost publish is never fatal: the database still says the work is waiting, and RECOVERED_BY
    names what picks it up. So callers never roll back or raise because of it.
    """
    try:
        publisher.send(actor_name, str(object_id), delay_ms=delay_ms)
        return True
    except Exception:
        log.exception(
            "publishing %s failed; %s",
            actor_name,
            RECOVERED_BY.get(actor_name, "the next tick retries"),
            extra={"object_id": str(object_id)},
        )
        return False


class RecordingPublisher:
    """A publisher for unit tests: remembers what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[object, ...], int | None]] = []

    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str:
        if actor_name not in ACTOR_QUEUES:
            raise KeyError(actor_name)
        self.sent.append((actor_name, args, delay_ms))
        return f"msg-{len(self.sent)}"
