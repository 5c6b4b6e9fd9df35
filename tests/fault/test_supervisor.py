"""The supervisor behind `biapp scheduler`, with tiny fake children: restart with backoff, never exit
because a child died, stop cleanly on SIGTERM. Also the emitter's tick retry, with fake actors."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import dramatiq
import pytest

from services.cli import send_ticks
from services.supervisor import Backoff, describe, exit_status
from tests.support import ROOT, wait_until

PY = sys.executable
RUNNER = """
import json, sys
from services.supervisor import Backoff, Child, Supervisor
from shared.logs import configure_logging
configure_logging("scheduler", "text")
spec = json.loads(sys.argv[1])
children = [Child(c["name"], c["argv"], backoff=Backoff(**spec["backoff"])) for c in spec["children"]]
sys.exit(Supervisor(children, poll_interval=0.02).run())
"""
# Notes each start and each SIGTERM in a file; on SIGTERM lingers, then exits with the given code.
SLEEPER = """
import os, signal, sys, time
path, code, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def note(what):
    with open(path, "a") as f:
        f.write(f"{what} {os.getpid()}\\n")
def stop(*_):
    note("SIGTERM")
    time.sleep(linger)
    sys.exit(code)
signal.signal(signal.SIGTERM, stop)
note("started")
while True:
    time.sleep(1)
"""
CRASHER = [PY, "-c", "import sys; sys.exit(1)"]
FAST = {"initial": 0.1, "maximum": 0.4, "stable_after": 30}


class Supervised:
    def __init__(self, tmp_path, children: list[dict], backoff: dict = FAST):
        self.log_path = tmp_path / "supervisor.log"
        self._log = open(self.log_path, "wb")
        spec = json.dumps({"children": children, "backoff": backoff})
        self.proc = subprocess.Popen(
            [PY, "-c", RUNNER, spec], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def lines(self, pattern: str) -> list[re.Match]:
        return [m for m in re.finditer(pattern, self.log_path.read_text(errors="replace"))]

    def wait(self, timeout: float = 10) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def supervised(tmp_path):
    started: list[Supervised] = []

    def start(children, backoff=FAST):
        s = Supervised(tmp_path, children, backoff)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def sleeper(tmp_path, name: str, code: int = 0, linger: float = 0.0) -> dict:
    return {"name": name, "argv": [PY, "-c", SLEEPER, str(tmp_path / f"{name}.notes"), str(code), str(linger)]}


def notes(tmp_path, name: str) -> list[str]:
    path = tmp_path / f"{name}.notes"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_a_stable_run():
    backoff = Backoff(initial=1, maximum=60, stable_after=60)
    assert [backoff.delay(uptime=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(uptime=61) == 1  # it had recovered: the next crash starts over
    assert backoff.delay(uptime=3) == 2


def test_exit_codes_read_as_a_shell_reads_them():
    assert (describe(3), exit_status(3)) == ("exit code 3", 3)
    assert (describe(-signal.SIGKILL), exit_status(-signal.SIGKILL)) == ("signal SIGKILL", 137)


def _start_times(supervised_run, name: str) -> list[float]:
    stamps = supervised_run.lines(rf"(\S+ \S+) INFO +scheduler biapp\.supervisor: started {name} \(pid \d+\)")
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in stamps]


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays_and_never_stops_the_supervisor(supervised, tmp_path):
    run = supervised([{"name": "crasher", "argv": CRASHER}, sleeper(tmp_path, "steady")])

    wait_until(lambda: len(run.lines("crasher exited unexpectedly")) >= 6, timeout=15, what="six restarts")
    assert run.proc.poll() is None  # a dead child never ends the supervisor

    restarts = run.lines(r"crasher exited unexpectedly \(exit code 1\) after [\d.]+s; restarting it in ([\d.]+)s")
    assert [float(m.group(1)) for m in restarts[:6]] == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    starts = _start_times(run, "crasher")
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert all(gap >= delay - 0.01 for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=False)), gaps
    assert len(notes(tmp_path, "steady")) == 1  # the healthy child was left alone: started once

    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.wait() == 0
    [stopped] = [line for line in notes(tmp_path, "steady") if line.startswith("SIGTERM")]
    restarts_at_stop = len(run.lines("crasher exited unexpectedly"))
    time.sleep(0.5)
    assert len(run.lines("crasher exited unexpectedly")) == restarts_at_stop  # nothing restarted after the stop


def test_sigterm_is_forwarded_once_and_the_supervisor_waits_and_returns_the_childrens_code(supervised, tmp_path):
    run = supervised([sleeper(tmp_path, "slow", code=3, linger=1.0), sleeper(tmp_path, "quick")])
    wait_until(lambda: len(notes(tmp_path, "slow")) == 1 and len(notes(tmp_path, "quick")) == 1, what="children")

    began = time.monotonic()
    os.kill(run.proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    os.kill(run.proc.pid, signal.SIGTERM)  # impatient operator: not forwarded again
    os.kill(run.proc.pid, signal.SIGINT)
    code = run.wait()

    assert code == 3
    assert time.monotonic() - began >= 1.0  # waited for the slow child to finish
    assert [n.split()[0] for n in notes(tmp_path, "slow")] == ["started", "SIGTERM"]
    assert [n.split()[0] for n in notes(tmp_path, "quick")] == ["started", "SIGTERM"]
    assert run.lines("received SIGTERM: stopping slow, quick")
    assert not run.lines("exited unexpectedly")  # children stopping on our signal are not crashes


def test_a_ctrl_c_on_the_whole_process_group_reaches_each_child_once(supervised, tmp_path):
    run = supervised([sleeper(tmp_path, "child")])
    wait_until(lambda: len(notes(tmp_path, "child")) == 1, what="the child")

    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal does; children lead groups of their own

    assert run.wait() == 0
    assert [n.split()[0] for n in notes(tmp_path, "child")] == ["started", "SIGTERM"]


def test_what_a_crashed_child_leaves_behind_is_stopped_before_the_restart(supervised, tmp_path):
    pids = tmp_path / "grandchildren"
    leaves_one_behind = (
        "import subprocess, sys; "
        f"p = subprocess.Popen(['sleep', '300']); open({str(pids)!r}, 'a').write(f'{{p.pid}}\\n'); sys.exit(1)"
    )
    run = supervised([{"name": "parent", "argv": [PY, "-c", leaves_one_behind]}])
    wait_until(lambda: len(run.lines("parent exited unexpectedly")) >= 2, what="two crashes")

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    first = int(pids.read_text().split()[0])
    wait_until(lambda: not alive(first), timeout=5, what="the orphaned grandchild to be stopped")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_children_are_stopped_when_the_supervisor_itself_is_killed(supervised, tmp_path):
    run = supervised([sleeper(tmp_path, "orphan")])
    wait_until(lambda: len(notes(tmp_path, "orphan")) == 1, what="the child")

    os.kill(run.proc.pid, signal.SIGKILL)  # only the supervisor: its child is in a group of its own

    wait_until(lambda: len(notes(tmp_path, "orphan")) == 2, timeout=5, what="the child to get SIGTERM")
    assert notes(tmp_path, "orphan")[1].startswith("SIGTERM")


# --- the emitter's ticks ------------------------------------------------------------------------------


class FakeActor:
    def __init__(self, name: str, failures: int):
        self.actor_name = name
        self.failures = failures
        self.sent: list[dict] = []

    def send_with_options(self, **options):
        if self.failures:
            self.failures -= 1
            raise dramatiq.errors.ConnectionClosed(OSError("connection refused"))
        self.sent.append(options)


def test_a_tick_the_broker_refuses_is_retried_until_it_goes_through(caplog):
    caplog.set_level(logging.INFO, "biapp.emitter")
    flaky, fine = FakeActor("dispatch_due_reports", failures=3), FakeActor("sweep_stuck_executions", failures=0)

    unsent = send_ticks([flaky, fine], "2024-06-12T10:00:00+00:00", retry_for=5, first_delay=0.01)

    assert unsent == []
    assert flaky.sent == fine.sent == [{"scheduled_at": "2024-06-12T10:00:00+00:00"}]  # each once
    assert "at attempt 4, the broker is back" in caplog.text


def test_a_tick_is_given_up_after_the_retry_window_without_raising(caplog):
    down = FakeActor("dispatch_due_reports", failures=10**6)

    began = time.monotonic()
    unsent = send_ticks([down], "2024-06-12T10:00:00+00:00", retry_for=0.3, first_delay=0.05)

    assert unsent == [down]
    assert time.monotonic() - began < 1
    assert "the next tick catches up" in caplog.text
