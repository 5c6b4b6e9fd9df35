"""`biapp api` with several gunicorn workers: limits and metrics hold for the server, not for one process."""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from shared import users
from shared.db import transaction
from tests.support import Process, base_env, free_port, wait_until

PASSWORD = "correct horse battery"
FAILED_LOGINS_ALLOWED = 6


@pytest.fixture
def two_workers(pg_url, amqp, tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = base_env(
        BIAPP_DATABASE_URL=pg_url,
        BIAPP_BROKER_URL=amqp,
        BIAPP_LOGIN_RATE_LIMIT=f"{FAILED_LOGINS_ALLOWED} per minute",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    process = Process(
        ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "4"],
        env,
        log=tmp_path / "api.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base), timeout=60, what="the API to be ready")
        wait_until(lambda: len(_workers(process.proc.pid)) == 2, timeout=30, what="two gunicorn workers")
        yield process, base, metrics_dir
    finally:
        process.stop()


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _workers(master: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    found.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _served_by_pid(metrics_dir: Path, route: str) -> Counter:
    """Requests to `route` each worker counted, read from its own multiprocess file."""
    served: Counter = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, labels, _help = json.loads(key)
            if sample == "biapp_http_requests_total" and labels.get("route") == route:
                served[pid] += int(value)
    return served


def _fresh_get(url: str) -> int:
    # One connection per request (no keep-alive), so the workers share them out between them.
    return requests.get(url, headers={"Connection": "close"}, timeout=10).status_code


def _metric_total(base: str, route: str) -> float:
    text = requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("biapp_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_add_up_the_requests_every_worker_served(two_workers):
    process, base, metrics_dir = two_workers
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while len(_served_by_pid(metrics_dir, "/healthz")) < 2 and sent < 2000:
            assert set(pool.map(_fresh_get, [f"{base}/healthz"] * 40)) == {200}
            sent += 40
    served = _served_by_pid(metrics_dir, "/healthz")
    assert len(served) == 2, f"one worker served all {sent} requests"
    assert set(served) <= _workers(process.proc.pid)
    # Whichever worker answers the scrape, it reports what both served.
    for _ in range(6):
        assert _metric_total(base, "/healthz") == sent


def test_a_login_limit_holds_across_workers(two_workers, pg_session_factory):
    _process, base, metrics_dir = two_workers
    with transaction(pg_session_factory) as session:
        users.create_user(session, email="ana@example.com", password=PASSWORD, role="analyst")
    wrong = {"email": "ana@example.com", "password": "not her password"}

    def attempt(_):
        return requests.post(
            f"{base}/api/auth/login", json=wrong, headers={"Connection": "close"}, timeout=30
        ).status_code

    with ThreadPoolExecutor(FAILED_LOGINS_ALLOWED) as pool:
        assert list(pool.map(attempt, range(FAILED_LOGINS_ALLOWED))) == [401] * FAILED_LOGINS_ALLOWED
    # The attempts were shared out between the workers, yet every further one is refused by both.
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(attempt, range(8))) == [429] * 8
    right = requests.post(
        f"{base}/api/auth/login", json={**wrong, "password": PASSWORD}, headers={"Connection": "close"}, timeout=30
    )
    assert right.status_code == 429  # the pair is locked for the window, whatever the password
    refused = _served_by_pid(metrics_dir, "/api/auth/login")
    assert sum(refused.values()) == FAILED_LOGINS_ALLOWED + 9


def test_the_default_worker_count_follows_the_cpus(pg_url, amqp, tmp_path):
    port = free_port()
    env = base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp)
    env.pop("BIAPP_API_WORKERS", None)
    process = Process(["api", "--host", "127.0.0.1", "--port", str(port)], env, log=tmp_path / "api.log")
    try:
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}"), timeout=60, what="the API to be ready")
        from services.cli import default_api_workers

        expected = default_api_workers()
        assert 1 <= expected <= len(os.sched_getaffinity(0))
        wait_until(lambda: len(_workers(process.proc.pid)) == expected, timeout=30, what=f"{expected} workers")
    finally:
        process.stop()
