"""Per-process wiring: settings, logging, broker, context and the actors of a service.

Each service registers only its own actors, so a renderer process never loads
mailer code and the API loads neither. Standalone mode registers all of them on
one in-memory broker.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware

from shared.clock import Clock
from shared.config import Settings, load_settings
from shared.context import WorkerContext, build_context
from shared.logs import configure_logging
from shared.messaging import BrokerPublisher, build_broker

SERVICES = ("scheduler", "renderer", "mailer")


@dataclass
class Wiring:
    settings: Settings
    broker: dramatiq.Broker
    context: WorkerContext
    actors: dict[str, dramatiq.Actor]


def _in_dramatiq_worker() -> bool:
    """True in the worker processes the dramatiq CLI forks (`biapp worker …`, `biapp scheduler`).

    The API (gunicorn), standalone and the periodiq emitter are not: Dramatiq's Prometheus
    middleware forks an exposition server and writes multiprocess files, which only the
    dramatiq CLI knows how to run and clean up.
    """
    launcher = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return multiprocessing.parent_process() is not None and "dramatiq" in (launcher.name, launcher.parent.name)


def _middleware() -> list[Middleware]:
    # Queue arguments (max_priority, dead-message TTL) come from build_broker() alone, so they are
    # identical in every process; no middleware here changes them.
    from dramatiq.middleware import default_middleware
    from periodiq import PeriodiqMiddleware

    middleware = [m() for m in default_middleware]
    middleware.append(CurrentMessage())
    # Ticks older than this are dropped; the dispatcher catches up by itself.
    middleware.append(PeriodiqMiddleware(skip_delay=50))
    if _in_dramatiq_worker():
        # dramatiq 2.x no longer enables it by default. Its exposition server listens on
        # $dramatiq_prom_host:$dramatiq_prom_port (0.0.0.0:9191) and reads the multiprocess
        # files under $dramatiq_prom_db, where `biapp worker` also points PROMETHEUS_MULTIPROC_DIR
        # so the biapp_* series of every worker process are served next to dramatiq_*.
        from dramatiq.middleware.prometheus import Prometheus

        from services.heartbeat import Heartbeat

        middleware.append(Prometheus())
        middleware.append(Heartbeat())
    return middleware


def register(service: str, wiring: Wiring, **options) -> None:
    if service == "renderer":
        from services.renderer.actors import register as register_service
    elif service == "mailer":
        from services.mailer.actors import register as register_service
    elif service == "scheduler":
        from services.scheduler.actors import register as register_service
    else:
        raise ValueError(f"unknown service {service!r}")
    wiring.actors.update(register_service(wiring.broker, wiring.context, **options))


def bootstrap(
    services: tuple[str, ...],
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    configure_logs: bool = True,
    session_factory=None,
    **options,
) -> Wiring:
    settings = settings or load_settings()
    if configure_logs:
        configure_logging("+".join(services), settings.log_format, settings.log_level)
    broker = build_broker(settings, middleware=_middleware())
    context = build_context(settings, BrokerPublisher(broker), clock=clock, session_factory=session_factory)
    wiring = Wiring(settings, broker, context, {})
    for service in services:
        register(service, wiring, **options)
    return wiring
