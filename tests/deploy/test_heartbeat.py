"""The worker liveness probe: alive while threads run and messages keep to their limits, dead otherwise."""

from __future__ import annotations

import os
import threading

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import TimeLimit

from services import heartbeat
from services.heartbeat import Heartbeat, check, clear, main
from tests.support import wait_until


@pytest.fixture
def worker_with_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(heartbeat, "OVERRUN_MARGIN_S", 0.0)
    beat = Heartbeat(directory=tmp_path, interval_s=3600)
    broker = StubBroker(middleware=[TimeLimit(), beat])
    broker.emit_after("process_boot")
    release = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="biapp.renderer", time_limit=50)
    def stuck_in_c_code():
        release.wait(10)  # a wait the time limit cannot interrupt, like Pango or a blocked socket

    worker = Worker(broker, worker_threads=1)
    worker.start()
    yield beat, stuck_in_c_code, release, tmp_path
    release.set()
    worker.stop()


def test_a_booted_worker_beats_and_the_probe_says_alive(worker_with_heartbeat):
    beat, _actor, _release, directory = worker_with_heartbeat
    assert (directory / str(os.getpid())).exists()
    assert check(directory, max_age_s=90) == (True, "1 worker process(es) alive")
    assert main(["--dir", str(directory), "--max-age", "90"]) == 0


def test_a_message_stuck_past_its_time_limit_withholds_the_heartbeat(worker_with_heartbeat):
    beat, actor, release, directory = worker_with_heartbeat
    actor.send()
    wait_until(lambda: beat.problems(), timeout=10, what="the overrun to be noticed")
    assert "stuck_in_c_code" in beat.problems()[0]
    assert beat.beat() is False
    os.utime(directory / str(os.getpid()), (0, 0))  # and time passes without a beat
    ok, detail = check(directory, max_age_s=90)
    assert not ok and str(os.getpid()) in detail
    assert main(["--dir", str(directory), "--max-age", "90"]) == 1
    release.set()
    wait_until(lambda: not beat.problems(), timeout=10, what="the message to finish")
    assert beat.beat() is True


def test_no_heartbeat_at_all_is_not_alive_and_dead_processes_are_forgotten(tmp_path):
    assert check(tmp_path, 90)[0] is False
    dead_pid = 2**22 + 12345  # above pid_max on Linux: never a live process
    (tmp_path / str(dead_pid)).write_text("0\n")
    assert check(tmp_path, 90)[0] is False
    clear(tmp_path)
    assert not (tmp_path / str(dead_pid)).exists()
