"""The only way any part of BIApp Reports sends work to another part.

Messages carry ids and plain JSON, never rows or secrets; they are sent after the
commit that created the work. The API publishes by actor *name* and queue, so it
never imports renderer or mailer code (nor WeasyPrint).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import Middleware

from shared.config import Settings

QUEUE_SCHEDULER = "biapp.scheduler"
QUEUE_RENDERER = "biapp.renderer"
# Runs of reports that recently took long (BIAPP_HEAVY_RENDER_S) render here, on processes of their own.
QUEUE_RENDERER_HEAVY = "biapp.renderer.heavy"
QUEUE_MAILER = "biapp.mailer"

# Actor names: the only spelling of each, used by the services that register them and by the
# parts that publish to them.
DISPATCH_DUE_REPORTS = "dispatch_due_reports"
DISPATCH_DUE_ALERTS = "dispatch_due_alerts"
SWEEP_STUCK_EXECUTIONS = "sweep_stuck_executions"
PURGE_EXPIRED = "purge_expired"
RENDER_REPORT = "render_report"
RENDER_HEAVY_REPORT = "render_heavy_report"
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
    RENDER_HEAVY_REPORT: QUEUE_RENDERER_HEAVY,
    EVALUATE_ALERT: QUEUE_RENDERER,
    DELIVER_REPORT: QUEUE_MAILER,
    DELIVER_ALERT: QUEUE_MAILER,
}

# What recovers a message whose publish failed after its commit, by actor: said in the log line.
RECOVERED_BY: dict[str, str] = {
    RENDER_REPORT: "the sweeper re-enqueues runs left queued",
    RENDER_HEAVY_REPORT: "the sweeper re-enqueues runs left queued",
    DELIVER_REPORT: "the sweeper re-sends runs left rendered or sending",
    EVALUATE_ALERT: "the next alert tick re-enqueues events left pending",
    DELIVER_ALERT: "the next alert tick re-enqueues deliveries left pending",
}

log = logging.getLogger(__name__)

# What RabbitmqBroker.enqueue sends with every message (persistent, no priority): one instance for a batch's thousands.
_PERSISTENT = pika.BasicProperties(delivery_mode=2)


class Publisher(Protocol):
    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str: ...


def build_broker(settings: Settings, middleware: list[Middleware] | None = None) -> dramatiq.Broker:
    """The broker for this process: RabbitMQ with publisher confirms, or in-memory."""
    if settings.broker_is_memory:
        broker: dramatiq.Broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    else:
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=middleware)
    for queue in (QUEUE_SCHEDULER, QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, QUEUE_MAILER):
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


class BrokerPublisher:
    """Publishes by actor name; the receiving service registers the actor itself."""

    def __init__(self, broker: dramatiq.Broker):
        self.broker = broker
        self._batch_lock = threading.Lock()
        self._batch_connection: pika.BlockingConnection | None = None
        self._batch_tx_channel = None

    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str:
        queue = ACTOR_QUEUES[actor_name]
        message = dramatiq.Message(queue_name=queue, actor_name=actor_name, args=tuple(args), kwargs={}, options={})
        sent = self.broker.enqueue(message, delay=delay_ms)
        log.debug("published %s to %s", actor_name, queue, extra={"message_id": sent.message_id})
        return sent.message_id

    def send_many(self, actor_name: str, items: Sequence[tuple[object, int | None]]) -> int:
        """Publish one message per (id, delay_ms), the same messages `send` makes, with one broker round trip.

        On RabbitMQ the batch goes out in one AMQP transaction on a channel of its own: the
        broker has taken every message (persistent, on durable queues) when tx.commit answers,
        or none of them, instead of one confirm round trip per message. Raises when the broker
        refused; then nothing of the batch was delivered.
        """
        if not isinstance(self.broker, RabbitmqBroker):
            for object_id, delay_ms in items:
                self.send(actor_name, str(object_id), delay_ms=delay_ms)
            return len(items)
        queue = ACTOR_QUEUES[actor_name]
        self.broker.declare_queue(queue, ensure=True)
        with self._batch_lock:
            for attempt in (1, 2):
                try:
                    channel = self._batch_channel()
                    for object_id, delay_ms in items:
                        self._publish_one(channel, queue, actor_name, object_id, delay_ms)
                    channel.tx_commit()
                    return len(items)
                except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
                    self._close_batch_connection()
                    if attempt == 2:
                        raise
        return 0  # not reached

    def _batch_channel(self):
        if self._batch_connection is None or not self._batch_connection.is_open:
            self._batch_connection = pika.BlockingConnection(self.broker.parameters)
            self._batch_tx_channel = None
        if self._batch_tx_channel is None or not self._batch_tx_channel.is_open:
            self._batch_tx_channel = self._batch_connection.channel()
            self._batch_tx_channel.tx_select()
        return self._batch_tx_channel

    def _close_batch_connection(self) -> None:
        connection, self._batch_connection, self._batch_tx_channel = self._batch_connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as exc:  # already broken: nothing to release
                log.debug("closing the batch publishing connection: %s", exc)

    def _publish_one(self, channel, queue: str, actor_name: str, object_id: object, delay_ms: int | None) -> None:
        message = dramatiq.Message(
            queue_name=queue, actor_name=actor_name, args=(str(object_id),), kwargs={}, options={}
        )
        routing_key = queue
        if delay_ms is not None:
            # What RabbitmqBroker.enqueue does for a delayed message: the delay queue, with an eta.
            routing_key = dq_name(queue)
            message = message.copy(queue_name=routing_key, options={"eta": current_millis() + delay_ms})
        self.broker.emit_before("enqueue", message, delay_ms)
        # The blocking channel flushes the socket after every message; its underlying channel only
        # buffers the frames, and tx.commit flushes them all and waits for the broker's answer once.
        publish = getattr(channel, "_impl", channel).basic_publish
        priority = message.options.get("broker_priority")
        publish(
            exchange="",
            routing_key=routing_key,
            body=message.encode(),
            properties=_PERSISTENT if priority is None else pika.BasicProperties(delivery_mode=2, priority=priority),
        )
        self.broker.emit_after("enqueue", message, delay_ms)


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


def publish_many_after_commit(publisher: Publisher, actor_name: str, items: Sequence[tuple[object, int | None]]) -> int:
    """publish_after_commit for many (id, delay_ms) at once; returns how many went out.

    A publisher with `send_many` sends the lot in one round trip; a refused batch is logged
    once (RECOVERED_BY picks the work up) and never raised.
    """
    send_many = getattr(publisher, "send_many", None)
    if send_many is None:
        return sum(publish_after_commit(publisher, actor_name, i, delay_ms=d) for i, d in items)
    try:
        return send_many(actor_name, items)
    except Exception:
        log.exception(
            "publishing %d %s messages failed; %s",
            len(items),
            actor_name,
            RECOVERED_BY.get(actor_name, "the next tick retries"),
        )
        return 0


class RecordingPublisher:
    """A publisher for unit tests: remembers what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[object, ...], int | None]] = []

    def send(self, actor_name: str, *args: object, delay_ms: int | None = None) -> str:
        if actor_name not in ACTOR_QUEUES:
            raise KeyError(actor_name)
        self.sent.append((actor_name, args, delay_ms))
        return f"msg-{len(self.sent)}"
