"""Driving a real `biapp scheduler` in fault tests: start it, read its JSON log, find its children."""

from __future__ import annotations

import json
import os
import re
import time

from shared.messaging import QUEUE_SCHEDULER
from tests.support import Process, free_port, wait_until


def log_entries(process: Process) -> list[dict]:
    entries = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                pass
    return entries


def messages(process: Process, pattern: str) -> list[dict]:
    """The process's JSON log entries whose message matches `pattern`."""
    return [entry for entry in log_entries(process) if re.search(pattern, entry.get("message", ""))]


def parent_of(pid: int) -> int | None:
    """The parent of a live process; None once it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


def current_children(process: Process) -> dict[str, int]:
    """Child name -> pid of its latest start, from the supervisor's `started <name> (pid N)` lines."""
    children = {}
    for entry in messages(process, r"^started \w+ \(pid \d+\)$"):
        name, pid = re.match(r"started (\w+) \(pid (\d+)\)", entry["message"]).groups()
        children[name] = int(pid)
    return children


def start_scheduler(env: dict, tmp_path) -> Process:
    prom = tmp_path / "prom"
    prom.mkdir(exist_ok=True)
    scheduler_env = {**env, "dramatiq_prom_port": str(free_port()), "dramatiq_prom_db": str(prom)}
    return Process(["scheduler"], scheduler_env, log=tmp_path / "scheduler.log")


def wait_for_scheduler(scheduler: Process, rabbit, vhost: str) -> None:
    """Both children up: the emitter has sent its start-up tick and the worker consumes biapp.scheduler."""
    wait_until(lambda: set(current_children(scheduler)) == {"worker", "emitter"}, timeout=20, what="both children")
    wait_until(lambda: messages(scheduler, r"^sent ticks for "), timeout=30, what="the emitter's first tick")
    wait_until(lambda: rabbit.consumers(vhost, QUEUE_SCHEDULER) >= 1, timeout=30, what="a biapp.scheduler consumer")


def sleep_until(moment: float, scheduler: Process) -> None:
    """Sleep until time.time() reaches `moment`, checking every second that the scheduler is up."""
    while (left := moment - time.time()) > 0:
        assert scheduler.proc.poll() is None, f"biapp scheduler exited:\n{scheduler.output()[-3000:]}"
        time.sleep(min(1.0, left))


def all_pids() -> list[int]:
    """Every process id on the machine (Linux /proc)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]
