"""Worker liveness: each Dramatiq worker process rewrites a heartbeat file while it is healthy.

Healthy means the process's consumer and worker threads are alive and no message has run
longer than its time limit plus a margin. Dramatiq's time limit cannot interrupt C code
(Pango, a blocked socket), so a message stuck there stops the heartbeat and the liveness
probe restarts the container: that is the hard cap on a render. An unreachable broker is
*not* unhealthy: the consumer reconnects by itself and a restart would not help.

The probe is `python -m services.heartbeat --max-age 90` (exit 0 = alive).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

HEARTBEAT_DIR = Path(tempfile.gettempdir()) / "biapp-heartbeat"
INTERVAL_S = 10.0
OVERRUN_MARGIN_S = 60.0
DEFAULT_TIME_LIMIT_MS = 600_000  # Dramatiq's own default


class Heartbeat(Middleware):
    """Touches <dir>/<pid> every few seconds while the worker in this process is healthy."""

    def __init__(self, directory: Path = HEARTBEAT_DIR, interval_s: float = INTERVAL_S):
        self.directory = directory
        self.interval_s = interval_s
        self.path = directory / str(os.getpid())
        self._worker: dramatiq.Worker | None = None
        self._broker: dramatiq.Broker | None = None
        self._running: dict[str, tuple[float, float, str]] = {}  # message_id -> (started, deadline, actor)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._shutting_down = False

    def after_worker_boot(self, broker, worker):
        self._broker, self._worker = broker, worker
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / str(os.getpid())
        self.beat()
        threading.Thread(target=self._loop, name="biapp-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        # Keep beating while in-flight messages finish: the pod is draining, not hung.
        self._shutting_down = True

    def after_worker_shutdown(self, broker, worker):
        self._stop.set()
        self.path.unlink(missing_ok=True)

    def before_process_message(self, broker, message):
        limit_ms = message.options.get("time_limit")
        if limit_ms is None:
            try:
                limit_ms = broker.get_actor(message.actor_name).options.get("time_limit")
            except dramatiq.errors.ActorNotFound:
                limit_ms = None
        now = time.monotonic()
        deadline = now + (limit_ms or DEFAULT_TIME_LIMIT_MS) / 1000 + OVERRUN_MARGIN_S
        with self._lock:
            self._running[message.message_id] = (now, deadline, message.actor_name)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        with self._lock:
            self._running.pop(message.message_id, None)

    after_skip_message = after_process_message

    def problems(self) -> list[str]:
        """Why this worker is not healthy (empty when it is)."""
        found: list[str] = []
        worker = self._worker
        if worker is not None and not self._shutting_down:
            dead = [t.name for t in [*worker.workers, *worker.consumers.values()] if not t.is_alive()]
            if dead:
                found.append(f"threads stopped: {', '.join(dead)}")
        now = time.monotonic()
        with self._lock:
            for message_id, (started, deadline, actor) in self._running.items():
                if now > deadline:
                    found.append(f"{actor} message {message_id} running for {now - started:.0f}s, past its limit")
        return found

    def beat(self) -> bool:
        problems = self.problems()
        if problems:
            log.error("worker unhealthy, heartbeat withheld: %s", "; ".join(problems))
            return False
        self.path.write_text(f"{time.time():.3f}\n")
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except OSError:
                log.exception("cannot write heartbeat file %s", self.path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check(directory: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """Alive when at least one worker process beats and every live one beat within max_age_s."""
    now = time.time() if now is None else now
    beats = [p for p in directory.glob("*") if p.name.isdigit()] if directory.is_dir() else []
    live = [p for p in beats if _pid_alive(int(p.name))]
    if not live:
        return False, f"no worker heartbeat in {directory}"
    stale = [p.name for p in live if now - p.stat().st_mtime > max_age_s]
    if stale:
        return False, f"worker process(es) {', '.join(stale)} silent for more than {max_age_s:.0f}s"
    return True, f"{len(live)} worker process(es) alive"


def clear(directory: Path = HEARTBEAT_DIR) -> None:
    """Forget heartbeats of processes that no longer exist (called before a worker starts)."""
    if directory.is_dir():
        for path in directory.glob("*"):
            if path.name.isdigit() and not _pid_alive(int(path.name)):
                path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.heartbeat", description="worker liveness probe")
    parser.add_argument("--max-age", type=float, default=90.0, help="seconds since the last heartbeat")
    parser.add_argument("--dir", type=Path, default=HEARTBEAT_DIR)
    args = parser.parse_args(argv)
    ok, detail = check(args.dir, args.max_age)
    print(detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
