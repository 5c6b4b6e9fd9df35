"""`biapp`: the one command operators and developers use.

Commands translate arguments and hand over to the service modules; a bad setting
stops every command at start with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

from shared.config import ConfigError, Settings, load_settings
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, QUEUE_SCHEDULER

WORKER_QUEUES = {"renderer": QUEUE_RENDERER, "mailer": QUEUE_MAILER, "scheduler": QUEUE_SCHEDULER}
# Processes on the heavy queue render one export each, at a lower CPU priority than the main lane.
HEAVY_NICE = 10


def _settings() -> Settings:
    return load_settings()


def cmd_api(args: argparse.Namespace) -> int:
    """gunicorn with --workers processes (BIAPP_API_WORKERS, else one per CPU) of --threads threads each."""
    settings = _settings()
    graceful = str(args.graceful_timeout)
    workers = args.workers or settings.api_workers or default_api_workers()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "services.api.wsgi:app",
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(workers),
        "--threads",
        str(args.threads),
        "--worker-class",
        "gthread",
        "--graceful-timeout",
        graceful,
        "--timeout",
        "120",
        "--access-logfile",
        "-" if settings.log_format == "text" else "/dev/null",
        "--limit-request-line",
        "8190",
        "--keep-alive",
        str(settings.api_keepalive_s),
        # gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl) that every
        # instance on the host would fight over; nothing here uses gunicornc, so there is none.
        "--no-control-socket",
        # hooks: a worker's metrics files are retired when it exits, the metrics directory removed at the end
        "--config",
        "python:services.api.gunicorn_hooks",
    ]
    os.execve(sys.executable, argv, _prepare_api_metrics())  # exec: SIGTERM reaches gunicorn directly


# The CPU-sized default stops here: each worker holds up to 15 database connections (pool 5 + overflow 10).
MAX_DEFAULT_API_WORKERS = 8


def default_api_workers() -> int:
    """One gthread worker per usable CPU: the CPUs this process may run on, or fewer under a cgroup CPU limit.

    Request handling is Python under one GIL per process, so one process per CPU uses every CPU; the threads
    of each wait on the database. More processes than CPUs only add memory and database connections.
    """
    usable = cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            usable = min(usable, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return min(usable, MAX_DEFAULT_API_WORKERS)


API_METRICS_PREFIX = "biapp-api-metrics-"  # services/api/gunicorn_hooks.py removes such a directory at exit


def _prepare_api_metrics() -> dict[str, str]:
    """The environment for gunicorn: one multiprocess metrics directory for its workers.

    Each worker writes its biapp_* series there and /metrics sums every worker's (services/api/ops/views.py).
    $PROMETHEUS_MULTIPROC_DIR when set (files of processes that no longer exist are removed first), else a
    fresh directory of this server's own, removed when it stops.
    """
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix=API_METRICS_PREFIX)}
    Path(given).mkdir(parents=True, exist_ok=True)
    for path in Path(given).glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
    return {**os.environ}


def cpu_count() -> int:
    """The CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _dramatiq_argv(service: str, processes: int, threads: int, shutdown_ms: int, queue: str | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        f"services.{service}.worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        queue or WORKER_QUEUES[service],
        "--worker-shutdown-timeout",
        str(shutdown_ms),
        "--skip-logging",
    ]


def _shutdown_ms(settings: Settings, service: str) -> int:
    limit = {"renderer": settings.render_time_limit_s, "mailer": settings.mail_time_limit_s}.get(service, 60)
    return (limit + 30) * 1000


def _prepare_worker_metrics() -> dict[str, str]:
    """The environment for dramatiq worker processes: one multiprocess metrics directory.

    Every worker process writes its biapp_* and dramatiq_* series there and Dramatiq's
    exposition server ($dramatiq_prom_port, 9191) serves them together. Files and heartbeats
    left by processes that no longer exist are removed first.
    """
    from dramatiq.middleware.prometheus import DB_PATH

    from services.heartbeat import clear

    clear()
    for path in Path(DB_PATH).glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": DB_PATH}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_worker(args: argparse.Namespace) -> int:
    """One Dramatiq master for the service's queue; the renderer's `all` lane runs two, supervised.

    Processes default to one per CPU. A renderer on `--lane all` (the default) also runs
    `--heavy-processes` (1) on biapp.renderer.heavy, niced, so a long export never holds a process
    the small reports need (services/renderer/lanes.py); `--lane main` / `--lane heavy` run one of
    the two alone, as separate Deployments do.
    """
    settings = _settings()
    shutdown_ms = _shutdown_ms(settings, args.service)
    processes = args.processes or cpu_count()
    lane = getattr(args, "lane", "main")
    if args.service == "renderer" and lane == "heavy":
        argv = _dramatiq_argv("renderer", args.processes or 1, 1, shutdown_ms, QUEUE_RENDERER_HEAVY)
    elif args.service == "renderer" and lane == "all" and args.heavy_processes > 0:
        from services.supervisor import Child, Supervisor
        from shared.logs import configure_logging

        configure_logging("renderer", settings.log_format, settings.log_level)
        main = _dramatiq_argv("renderer", processes, args.threads, shutdown_ms, QUEUE_RENDERER)
        heavy = _dramatiq_argv("renderer", args.heavy_processes, 1, shutdown_ms, QUEUE_RENDERER_HEAVY)
        return Supervisor(
            [
                Child("renderer", main, env=_prepare_worker_metrics),
                Child("renderer-heavy", heavy, env=_prepare_worker_metrics, nice=HEAVY_NICE),
            ]
        ).run()
    else:
        argv = _dramatiq_argv(args.service, processes, args.threads, shutdown_ms)
    # exec: the dramatiq master becomes this process and receives SIGTERM itself; it stops
    # consuming, lets each worker process finish its messages within --worker-shutdown-timeout
    # and requeues what was prefetched but not started.
    os.execve(sys.executable, argv, _prepare_worker_metrics())


# The tick emitter child: bootstraps the scheduler service (logging, broker, actors) on import.
_EMITTER = "from services.cli import run_tick_emitter; run_tick_emitter()"
# A refused tick is retried for this long, then left to the next one: the worker drops ticks older than
# PeriodiqMiddleware's skip_delay (50 s) unread anyway.
TICK_RETRY_S = 40.0
TICK_RETRY_MAX_DELAY_S = 5.0


def send_ticks(actors, now, *, retry_for: float = TICK_RETRY_S, first_delay: float = 1.0) -> list:
    """Send one periodiq tick to each actor, retrying while the broker is unreachable; returns the unsent."""
    from dramatiq import errors

    broker_down = getattr(errors, "BrokerConnectionError", None) or errors.ConnectionError  # dramatiq 2 / 1
    log = logging.getLogger("biapp.emitter")
    names = ", ".join(actor.actor_name for actor in actors)
    deadline = time.monotonic() + retry_for
    delay, attempt, pending = first_delay, 1, list(actors)
    while True:
        error = None
        for actor in list(pending):
            try:
                actor.send_with_options(scheduled_at=str(now))
                pending.remove(actor)
            except broker_down as exc:
                error = exc
        if not pending:
            if attempt > 1:
                log.info("sent ticks for %s at attempt %d, the broker is back: %s", now, attempt, names)
            else:
                log.info("sent ticks for %s: %s", now, names)
            return []
        if time.monotonic() + delay > deadline:
            log.warning("ticks for %s not sent, broker unreachable (%s); the next tick catches up", now, error)
            return pending
        if attempt == 1:
            log.warning("ticks for %s not sent, broker unreachable (%s); retrying for %gs", now, error, retry_for)
        time.sleep(delay)
        delay, attempt = min(delay * 2, TICK_RETRY_MAX_DELAY_S), attempt + 1


def run_tick_emitter() -> None:
    """periodiq's emitter loop, except that a tick the broker refuses never ends the process.

    periodiq.main() dies on the first ConnectionClosed. Ticks are idempotent and a missed one is
    caught up by the next, so here a refused tick is retried for a while, then skipped.
    SIGTERM exits 0.
    """
    import pendulum
    import periodiq

    from services.scheduler.worker import broker  # bootstrap: logging, broker, actors

    class Emitter(periodiq.Scheduler):
        def send_actors(self, actors, now):
            send_ticks(actors, now)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    actors = [actor for actor in broker.actors.values() if "periodic" in actor.options]
    periodiq.print_periodic_actors(actors)
    emitter = Emitter(actors)
    if pendulum.now().second > 55:  # as periodiq does: not a tick at :59 and another at :00
        time.sleep(60 - pendulum.now().second)
    emitter.schedule()
    emitter.loop()


def cmd_scheduler(args: argparse.Namespace) -> int:
    """periodiq emits the every-minute tick; a dramatiq worker on biapp.scheduler runs it.

    Both run as supervised children (services/supervisor.py): one that exits is restarted with
    backoff, so a broker or database outage never ends `biapp scheduler`; SIGTERM stops both.
    """
    from services.supervisor import Child, Supervisor
    from shared.logs import configure_logging

    settings = _settings()
    configure_logging("scheduler", settings.log_format, settings.log_level)
    worker_argv = _dramatiq_argv("scheduler", 1, args.threads, _shutdown_ms(settings, "scheduler"))
    return Supervisor(
        [
            Child("worker", worker_argv, env=_prepare_worker_metrics),
            Child("emitter", [sys.executable, "-c", _EMITTER]),
        ]
    ).run()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from shared.db.migrate import upgrade

    upgrade(_settings().database_url)
    print("database is at the newest schema")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from shared import users
    from shared.db import make_engine, make_session_factory, transaction

    settings = _settings()
    password = args.password or os.environ.get("BIAPP_ADMIN_PASSWORD")
    factory = make_session_factory(make_engine(settings.database_url))
    with transaction(factory) as session:
        existing = users.find_by_email(session, args.email)
        if existing is None and not password:
            if not sys.stdin.isatty():
                print("biapp: give --password or BIAPP_ADMIN_PASSWORD", file=sys.stderr)
                return 2
            password = getpass.getpass("Password for the new admin: ")
        user, created = users.ensure_admin(session, email=args.email, password=password or "")
    print(f"{'created' if created else 'already exists, is admin'}: {user.email}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from shared.db import make_engine, make_session_factory
    from shared.secrets_rotation import rotate_all

    settings = _settings()
    factory = make_session_factory(make_engine(settings.database_url))
    rotated, unreadable = rotate_all(factory, settings)
    print(f"re-encrypted {rotated} secrets with the newest key")
    for name in unreadable:
        print(f"cannot decrypt with any key (left unchanged): {name}", file=sys.stderr)
    return 1 if unreadable else 0


def cmd_standalone(args: argparse.Namespace) -> int:
    from services.standalone import run_standalone

    return run_standalone(data_dir=args.data_dir, port=args.port, demo=args.demo, host=args.host)


def _count(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be between 0 and 256, not {value}")
    return value


def _threads(raw: str) -> int:
    value = _count(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biapp", description="BIApp Reports: scheduled reports and alerts")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("standalone", help="the whole system in one process (SQLite, in-memory broker, local SMTP sink)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data-dir", default="./var")
    p.add_argument("--demo", action="store_true", help="seed an admin, a sample database and a report")
    p.set_defaults(func=cmd_standalone)

    p = sub.add_parser("api", help="production API server (gunicorn)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=0, help="processes (default BIAPP_API_WORKERS, else one per CPU)")
    # Slow requests (previews wait on a data source) must not starve logins: threads are cheap, and
    # previews take at most BIAPP_PREVIEWS_PER_PROCESS of them.
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--graceful-timeout", type=int, default=30)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("scheduler", help="periodiq tick emitter plus a biapp.scheduler worker")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser("worker", help="a Dramatiq worker for one queue")
    p.add_argument("service", choices=("renderer", "mailer"))
    p.add_argument("--processes", type=_count, default=0, help="worker processes (default: one per CPU)")
    p.add_argument("--threads", type=_threads, default=2, help="threads per process")
    p.add_argument(
        "--lane",
        choices=("all", "main", "heavy"),
        default="all",
        help="renderer: which queues (all: biapp.renderer plus --heavy-processes on biapp.renderer.heavy)",
    )
    p.add_argument("--heavy-processes", type=_count, default=1, help="renderer, lane all: processes for heavy reports")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database schema")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="run migrations to the newest schema")
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("users", help="user bootstrap")
    users_sub = p.add_subparsers(dest="users_command", required=True)
    ca = users_sub.add_parser("create-admin", help="create the first admin (idempotent)")
    ca.add_argument("--email", required=True)
    ca.add_argument("--password")
    ca.set_defaults(func=cmd_create_admin)

    p = sub.add_parser("keys", help="encryption keys")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    rot = keys_sub.add_parser("rotate", help="re-encrypt every stored secret with the newest key")
    rot.set_defaults(func=cmd_keys_rotate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"biapp: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
