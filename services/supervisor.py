"""Keep child processes running: restart each one that exits, with backoff; stop them all on SIGTERM.

`biapp scheduler` runs two children, the periodiq tick emitter and a Dramatiq worker on
`biapp.scheduler`. A child that exits on its own (a broker outage it did not survive, a crash,
the OOM killer) is logged in one line and started again after a delay that doubles from 1 s up
to 60 s and starts over once the child has stayed up for a minute. The supervisor never exits
because a child ended: only SIGTERM or SIGINT stop it. The signal is forwarded once to each
running child (a second SIGTERM would make a Dramatiq worker drop the tick it is running) and
the supervisor exits when every child has finished, with the first non-zero exit code among them.

Each child leads a process group of its own, so a terminal's Ctrl-C or a `kill` of the whole
group reaches the children through the supervisor only, exactly once; the group is also how the
leftovers of a crashed child (a Dramatiq master's worker processes) are stopped before the
restart. On Linux a child gets SIGTERM if the supervisor itself is killed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("biapp.supervisor")


@dataclass
class Backoff:
    """Restart delays: `initial`, doubling up to `maximum`; back to `initial` after `stable_after` s up."""

    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 60.0
    _next: float | None = field(default=None, init=False, repr=False)

    def delay(self, uptime: float) -> float:
        """The wait before starting again a child that just exited after `uptime` seconds."""
        if self._next is None or uptime >= self.stable_after:
            self._next = self.initial
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay


@dataclass
class Child:
    """A command the supervisor keeps running; `env` (if given) is called before every start."""

    name: str
    argv: Sequence[str]
    env: Callable[[], dict[str, str]] | None = None
    nice: int = 0  # added to the child's niceness: it gets the CPU the others leave
    backoff: Backoff = field(default_factory=Backoff)
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    start_at: float = 0.0  # monotonic time a child that is not running is due to start
    restarts: int = 0


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def exit_status(returncode: int) -> int:
    """A child's return code as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a preexec hook that makes the child receive SIGTERM when the supervisor dies."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError, TypeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


class Supervisor:
    def __init__(self, children: Sequence[Child], *, poll_interval: float = 0.2):
        self.children = list(children)
        self.poll_interval = poll_interval
        self.stop_signal: int | None = None  # set by the signal handler, acted on by the loop
        self._codes: list[int] = []
        self._preexec = _parent_death_signal()

    def request_stop(self, signum: int = signal.SIGTERM, _frame: object = None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the exit status for the supervisor's own process."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stopping = False
            while True:
                if self.stop_signal is not None and not stopping:
                    stopping = True
                    self._forward_stop()
                for child in self.children:
                    self._check(child, stopping)
                if stopping and all(child.process is None for child in self.children):
                    return next((code for code in self._codes if code), 0)
                time.sleep(self.poll_interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _check(self, child: Child, stopping: bool) -> None:
        if child.process is None:
            if not stopping and time.monotonic() >= child.start_at:
                self._start(child)
            return
        code = child.process.poll()
        if code is None:
            return
        pid, child.process = child.process.pid, None
        if stopping:
            log.info("%s stopped (%s)", child.name, describe(code))
            self._codes.append(exit_status(code))
            return
        _stop_group(pid)
        uptime = time.monotonic() - child.started_at
        delay = child.backoff.delay(uptime)
        child.start_at = time.monotonic() + delay
        child.restarts += 1
        log.warning(
            "%s exited unexpectedly (%s) after %.1fs; restarting it in %gs (restart %d)",
            child.name,
            describe(code),
            uptime,
            delay,
            child.restarts,
        )

    def _start(self, child: Child) -> None:
        child.started_at = time.monotonic()
        try:
            child.process = subprocess.Popen(
                list(child.argv),
                env=child.env() if child.env else None,
                process_group=0,
                preexec_fn=self._preexec_for(child),  # safe: the supervisor runs no threads
            )
        except Exception as exc:  # a failed start is retried like a crash, never fatal
            delay = child.backoff.delay(0.0)
            child.start_at = time.monotonic() + delay
            log.error("%s could not be started (%s); trying again in %gs", child.name, exc, delay)
            return
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _preexec_for(self, child: Child) -> Callable[[], None] | None:
        if not child.nice:
            return self._preexec
        parent_death = self._preexec

        def hook() -> None:
            if parent_death is not None:
                parent_death()
            os.nice(child.nice)

        return hook

    def _forward_stop(self) -> None:
        running = [child for child in self.children if child.process is not None]
        log.info(
            "received %s: stopping %s",
            signal.Signals(self.stop_signal).name,
            ", ".join(child.name for child in running) or "nothing",
        )
        for child in self.children:
            if child.process is not None:
                child.process.send_signal(signal.SIGTERM)


def _stop_group(pgid: int) -> None:
    """A crashed child may leave its own children behind (a Dramatiq master's worker processes):
    they are in its process group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
