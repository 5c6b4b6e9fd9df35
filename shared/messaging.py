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

# actor name -> queue; every actor in every service is listed here.
ACTOR_QUEUES: dict[str, str] = {
    "dispatch_due_reports": QUEUE_SCHEDULER,
    "sweep_stuck_executions": QUEUE_SCHEDULER,
    "purge_expired": QUEUE_SCHEDULER,
    "dispatch_due_alerts": QUEUE_SCHEDULER,
    "render_report": QUEUE_RENDERER,
    "evaluate_alert": QUEUE_RENDERER,
    "deliver_report": QUEUE_MAILER,
    "deliver_alert": QUEUE_MAILER,
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


class RecordingPublisher:
    """A publisher for unit tests: remembers what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[object, ...], int | None]] = []

    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str:
        if actor_name not in ACTOR_QUEUES:
            raise KeyError(actor_name)
        self.sent.append((actor_name, args, delay_ms))
        return f"msg-{len(self.sent)}"
