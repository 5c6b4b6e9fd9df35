"""Series computed when /metrics is scraped: the pipeline as the database and RabbitMQ see it.

Both are cheap: one grouped query on an indexed column and one AMQP connection with a
passive declare per queue, cached for a few seconds so frequent scrapes stay cheap. Every
API replica reports the same values; aggregate them with max(), not sum().
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pika
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER, QUEUE_SCHEDULER
from shared.models import ReportExecution

log = logging.getLogger(__name__)

OPEN_STATES = ("queued", "running", "rendered", "sending")
QUEUES = tuple(
    f"{base}{suffix}" for base in (QUEUE_SCHEDULER, QUEUE_RENDERER, QUEUE_MAILER) for suffix in ("", ".DQ", ".XQ")
)
CACHE_S = 10.0


class _Cached:
    """Keeps the last value of an expensive read for `ttl` seconds."""

    def __init__(self, read: Callable[[], object], ttl: float = CACHE_S):
        self.read, self.ttl = read, ttl
        self._value: object = None
        self._at = float("-inf")
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._value = self.read()
                self._at = time.monotonic()
            return self._value


def open_executions(session_factory: sessionmaker[Session], now: Callable[[], object]) -> dict[str, tuple[int, float]]:
    """status -> (count, age in seconds of the oldest) for executions not yet finished."""
    with session_factory() as session:
        rows = session.execute(
            sa.select(ReportExecution.status, sa.func.count(), sa.func.min(ReportExecution.queued_at))
            .where(ReportExecution.status.in_(OPEN_STATES))
            .group_by(ReportExecution.status)
        ).all()
    current = now()
    result = {state: (0, 0.0) for state in OPEN_STATES}
    for status, count, oldest in rows:
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=current.tzinfo)
        result[status] = (count, max(0.0, (current - oldest).total_seconds()) if oldest else 0.0)
    return result


def queue_depths(broker_url: str) -> dict[str, tuple[int, int]]:
    """queue -> (messages ready, consumers); queues not declared yet are left out."""
    params = pika.URLParameters(broker_url)
    params.socket_timeout = 2
    params.blocked_connection_timeout = 2
    params.connection_attempts = 1
    connection = pika.BlockingConnection(params)
    depths: dict[str, tuple[int, int]] = {}
    try:
        for queue in QUEUES:
            channel = connection.channel()
            try:
                method = channel.queue_declare(queue, passive=True).method
                depths[queue] = (method.message_count, method.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:
                continue  # not declared yet: no worker of that service has started
            finally:
                if channel.is_open:
                    channel.close()
    finally:
        connection.close()
    return depths


class PipelineCollector(Collector):
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session], now: Callable[[], object]):
        self._executions = _Cached(lambda: open_executions(session_factory, now))
        self._queues = None if settings.broker_is_memory else _Cached(lambda: queue_depths(settings.broker_url))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_count = GaugeMetricFamily(
            "biapp_executions_open", "Executions not finished yet, by state", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "biapp_executions_oldest_open_age_seconds",
            "Age (since queued) of the oldest execution in each unfinished state",
            labels=["status"],
        )
        try:
            for status, (count, age) in self._executions.get().items():
                open_count.add_metric([status], count)
                oldest.add_metric([status], age)
        except Exception as exc:  # a scrape reports what it can
            log.warning("metrics: cannot count executions: %s", type(exc).__name__)
        yield open_count
        yield oldest
        if self._queues is None:
            return
        ready = GaugeMetricFamily("biapp_queue_messages", "Messages ready in a RabbitMQ queue", labels=["queue"])
        consumers = GaugeMetricFamily("biapp_queue_consumers", "Consumers on a RabbitMQ queue", labels=["queue"])
        up = GaugeMetricFamily("biapp_broker_up", "1 when the API could read queue depths from RabbitMQ")
        try:
            for queue, (messages, count) in self._queues.get().items():
                ready.add_metric([queue], messages)
                consumers.add_metric([queue], count)
            up.add_metric([], 1)
        except Exception as exc:
            log.warning("metrics: cannot read queue depths: %s", type(exc).__name__)
            up.add_metric([], 0)
        yield ready
        yield consumers
        yield up
