"""Heavy reports render on a queue of their own, so a small report never waits behind a big export.

Every run is published to `biapp.renderer`. A renderer that takes one whose report's recent
renders took BIAPP_HEAVY_RENDER_S or longer (the median of the last three) forwards it to
`biapp.renderer.heavy` instead of rendering it, which takes milliseconds. Heavy runs are then
consumed by processes of their own (`biapp worker renderer` starts them beside the others; on
Kubernetes a Deployment of its own that KEDA scales on that queue), so an export that takes
twenty minutes holds one of those, never a process the small reports are waiting for.

A run is forwarded only while something consumes the heavy queue: with no heavy worker
running, it renders where it is, as before, rather than wait for nobody.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.orm import Session

from shared.context import WorkerContext
from shared.messaging import QUEUE_RENDERER_HEAVY, RENDER_HEAVY_REPORT, publish_after_commit
from shared.models import ReportExecution

log = logging.getLogger(__name__)

LIGHT = "light"
HEAVY = "heavy"
# How many recent renders decide, and how many recent runs are looked at to find them.
SAMPLE = 3
LOOK_BACK = 10
# How long an answer about the heavy queue's consumers is trusted.
CONSUMERS_TTL_S = 15.0


def recent_render_seconds(session: Session, report_id: uuid.UUID, *, exclude: uuid.UUID | None = None) -> list[float]:
    """Render durations (started → rendered) of the report's newest runs that got that far, newest first."""
    rows = session.execute(
        sa.select(ReportExecution.id, ReportExecution.started_at, ReportExecution.rendered_at)
        .where(ReportExecution.report_id == report_id)
        .order_by(ReportExecution.queued_at.desc(), ReportExecution.id.desc())
        .limit(LOOK_BACK)
    ).all()
    seconds = [
        (rendered - started).total_seconds()
        for run_id, started, rendered in rows
        if run_id != exclude and started is not None and rendered is not None
    ]
    return seconds[:SAMPLE]


def is_heavy(durations: list[float], threshold_s: float) -> bool:
    """Heavy when the median of the recent renders reaches the threshold (a report never rendered is not)."""
    return threshold_s > 0 and bool(durations) and statistics.median(durations) >= threshold_s


class ConsumerCount:
    """Whether anything consumes a queue, asked of the broker at most every CONSUMERS_TTL_S."""

    def __init__(self, broker, queue: str, *, clock: Callable[[], float] = time.monotonic):
        self.broker, self.queue, self.clock = broker, queue, clock
        self._lock = threading.Lock()
        self._answer: tuple[float, int] | None = None

    def __call__(self) -> int:
        with self._lock:
            now = self.clock()
            if self._answer is None or now - self._answer[0] > CONSUMERS_TTL_S:
                self._answer = (now, self._ask())
            return self._answer[1]

    def _ask(self) -> int:
        if isinstance(self.broker, StubBroker):
            # The in-process worker (`biapp standalone`, tests) consumes every declared queue.
            return 1 if self.queue in self.broker.queues else 0
        if not isinstance(self.broker, RabbitmqBroker):
            return 0
        try:
            channel = self.broker.connection.channel()
            try:
                return channel.queue_declare(queue=self.queue, durable=True, passive=True).method.consumer_count
            finally:
                if channel.is_open:
                    channel.close()
        except Exception as exc:  # a missing queue closes the channel with 404: nobody consumes it
            log.warning("cannot tell whether %s has consumers (%s); rendering heavy runs here", self.queue, exc)
            return 0


_heavy_consumers: dict[int, ConsumerCount] = {}


def heavy_consumers(ctx: WorkerContext) -> int:
    broker = getattr(ctx.publisher, "broker", None)
    if broker is None:
        return 0
    counter = _heavy_consumers.get(id(broker))
    if counter is None:
        counter = _heavy_consumers[id(broker)] = ConsumerCount(broker, QUEUE_RENDERER_HEAVY)
    return counter()


def forward_if_heavy(ctx: WorkerContext, execution_id: uuid.UUID, *, consumers=heavy_consumers) -> bool:
    """Send a queued run of a heavy report to the heavy queue; True when it went (the caller stops there)."""
    threshold = ctx.settings.heavy_render_s
    if threshold <= 0:
        return False
    with ctx.session_factory() as session:
        execution = session.get(ReportExecution, execution_id)
        if execution is None or execution.status != "queued":
            return False  # the claim that follows says what to do with it
        durations = recent_render_seconds(session, execution.report_id, exclude=execution_id)
        report_id = execution.report_id
    if not is_heavy(durations, threshold):
        return False
    extra = {"execution_id": str(execution_id), "report_id": str(report_id)}
    if consumers(ctx) <= 0:
        log.warning(
            "heavy report rendered on the main queue: nothing consumes %s (recent renders took %.0f s)",
            QUEUE_RENDERER_HEAVY,
            statistics.median(durations),
            extra=extra,
        )
        return False
    if not publish_after_commit(ctx.publisher, RENDER_HEAVY_REPORT, execution_id):
        return False
    log.info(
        "forwarded to %s: recent renders took %.0f s", QUEUE_RENDERER_HEAVY, statistics.median(durations), extra=extra
    )
    return True
