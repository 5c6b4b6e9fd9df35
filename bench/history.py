"""History benchmark: list latencies over real HTTP to `biapp api` (gunicorn) on a long history.

    .venv/bin/python bench/history.py [--small] [--requests 200] [--keep | --dsn URL] [--baseline REV]

Seeds a database of its own with bench/seed_history.py (1,000,000 executions, 3,000,000 deliveries,
2,000,000 artifact rows over 10,000 reports by default; `--dsn` reuses one seeded before with `--keep`),
starts `biapp api` on a free port against it, logs in as the admin, then for each list makes N sequential
requests from one client and prints p50 / p99 in ms: a report's history (page 1, page 500 by cursor and by
offset, filtered), every report's runs (page 1 and deep), the reports list (limit 50) and an alert's events.
Ends with the API processes' RSS (gunicorn master and workers, from /proc). Targets: p50 <= 15 ms, p99 <= 50 ms.
With `--baseline REV` the API of that revision (a git worktree) serves the same database beside this tree's,
and each list's requests alternate between the two, so both see the same moment of a noisy machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402

from bench.dispatch import machine  # noqa: E402
from bench.seed_history import ADMIN_EMAIL, PASSWORD, seeded_database, size_arguments, sizes_from  # noqa: E402
from tests.support import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
P50_TARGET, P99_TARGET = 15.0, 50.0


class Client:
    """One keep-alive HTTP connection with the admin's bearer token."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}

    def get(self, path: str, **query) -> dict:
        status, body = self.call("GET", f"{path}?{urlencode(query)}" if query else path)
        if status != 200:
            raise RuntimeError(f"GET {path} {query}: {status} {body}")
        return body


def wait_ready(client: Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = client.call("GET", "/healthz")
            if status == 200:
                return
        except OSError:
            client.connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError("biapp api did not start")
        time.sleep(0.3)


def rss_mb(pid: int) -> float:
    """The resident memory of a process and all its children, in MB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(child) for child in children)
        except OSError:
            continue
    return total / 1024


def cursor_at(client: Client, path: str, page: int, limit: int = 50) -> tuple[int, str]:
    """The cursor that opens page `page` (1-based; the last page when there are fewer), walked to once."""
    cursor, reached = None, 1
    while reached < page:
        body = client.get(path, limit=limit, **({"cursor": cursor} if cursor else {}))
        if body["next_cursor"] is None:
            break
        cursor, reached = body["next_cursor"], reached + 1
    return reached, cursor


def measure(clients: list[Client], path: str, query: dict, requests: int) -> list[tuple[float, float]]:
    """p50 and p99 (ms) of each client's server, the requests alternating between them (same moment, same
    machine noise)."""
    for client in clients:
        client.get(path, **query)  # warm
    times: list[list[float]] = [[] for _ in clients]
    for _ in range(requests):
        for client, spent in zip(clients, times, strict=True):
            started = time.perf_counter()
            client.get(path, **query)
            spent.append((time.perf_counter() - started) * 1000)
    result = []
    for spent in times:
        spent.sort()
        result.append((statistics.median(spent), spent[min(len(spent) - 1, int(len(spent) * 0.99))]))
    return result


def start_api(tree: Path, url: str, workers: int) -> tuple[subprocess.Popen, Client]:
    """`biapp api` of the source tree `tree` on a free port against `url`, and a client logged in as the admin."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "BIAPP_DATABASE_URL": url,
        "BIAPP_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F?heartbeat=60",
        "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
        "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
        "BIAPP_LOG_LEVEL": "WARNING",
        "BIAPP_LOGIN_RATE_LIMIT": "1000 per minute",
    }
    command = [sys.executable, "-m", "services.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--threads", "4"]
    api = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = Client(port)
    wait_ready(client)
    status, body = client.call("POST", "/api/auth/login", {"email": ADMIN_EMAIL, "password": PASSWORD})
    if status != 200:
        raise RuntimeError(f"login: {status} {body}")
    client.token = body["access_token"]
    return api, client


def stop_api(api: subprocess.Popen) -> None:
    api.send_signal(signal.SIGTERM)
    try:
        api.wait(30)
    except subprocess.TimeoutExpired:
        api.kill()


def run(url: str, big_report: str, big_alert: str, requests: int, workers: int, baseline: str | None) -> int:
    trees = [("this tree", ROOT)]
    worktree = None
    if baseline:
        worktree = Path(tempfile.mkdtemp(prefix="biapp-bench-baseline-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), baseline], cwd=ROOT, check=True)
        trees.insert(0, (f"baseline {baseline}", worktree))
    servers = []
    try:
        for _, tree in trees:
            servers.append(start_api(tree, url, workers))
        clients = [client for _, client in servers]
        client = clients[-1]
        history = f"/api/scheduled-reports/{big_report}/executions"
        filters = {"status": "success,failed", "trigger": "schedule,manual", "from": "2000-01-01", "to": "2999-12-31"}
        deep, page500 = cursor_at(client, history, 500)
        all_pages, all_deep = cursor_at(client, "/api/executions", 500)
        cases = [
            ("report history, page 1", history, {"limit": 50}),
            (f"report history, page {deep} by cursor", history, {"limit": 50, "cursor": page500}),
            (f"report history, page {deep} by offset (old way)", history, {"limit": 50, "offset": (deep - 1) * 50}),
            ("report history, status+trigger+dates", history, {"limit": 50, **filters}),
            ("report history, failed only", history, {"limit": 50, "status": "failed"}),
            ("all runs (admin), page 1", "/api/executions", {"limit": 50}),
            (f"all runs (admin), page {all_pages} by cursor", "/api/executions", {"limit": 50, "cursor": all_deep}),
            ("all runs (admin), filtered", "/api/executions", {"limit": 50, **filters}),
            ("all runs (admin), failed only", "/api/executions", {"limit": 50, "status": "failed"}),
            ("reports list, limit 50", "/api/scheduled-reports", {"limit": 50}),
            ("alert events, page 1", f"/api/alerts/{big_alert}/events", {"limit": 50}),
        ]
        total = client.get(history, limit=1, count="exact")["total"]
        print(f"report history holds {total:,} runs; {requests} sequential requests per line, one client")
        if baseline:
            print(f"each line alternates between the baseline ({baseline}) and this tree, request by request")
        width = 46
        columns = "".join(f" {'p50 ms':>8} {'p99 ms':>8}" for _ in trees)
        print("\n" + " " * width + "".join(f" {label[:17]:>17}" for label, _ in trees))
        print(f"{'list':<{width}}{columns}  target" + ("  p50 ratio" if baseline else ""))
        results = {}
        for label, path, query in cases:
            figures = measure(clients, path, query, requests)
            p50, p99 = figures[-1]
            results[label] = p50
            met = "" if "old way" in label else ("met" if p50 <= P50_TARGET and p99 <= P99_TARGET else "MISSED")
            line = f"{label:<{width}}" + "".join(f" {a:>8.1f} {b:>8.1f}" for a, b in figures) + f"  {met:6}"
            if baseline:
                line += f"  {figures[0][0] / p50:.2f}x"
            print(line)
        ratio = (
            results[f"report history, page {deep} by offset (old way)"]
            / results[f"report history, page {deep} by cursor"]
        )
        print(f"\npage {deep}: offset / cursor (p50) = {ratio:.1f}x")
        api = servers[-1][0]
        print(f"API RSS after the run (gunicorn master + {workers} workers): {rss_mb(api.pid):.0f} MB")
    finally:
        for api, _ in servers:
            stop_api(api)
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size_arguments(parser)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database and print its URL")
    parser.add_argument("--dsn", help="a database seeded before (seed_history.py --keep)")
    parser.add_argument("--big-report", help="with --dsn: the long report's id (default: 'Report 00001')")
    parser.add_argument("--baseline", help="a git revision: its API measured in the same run, request by request")
    args = parser.parse_args()
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    print(f"machine: {machine()}, RAM {int(mem.split()[1]) / 1024 / 1024:.1f} GiB")
    if args.dsn:
        import sqlalchemy as sa

        engine = sa.create_engine(args.dsn)
        with engine.connect() as conn:
            report = conn.execute(sa.text("SELECT id FROM scheduled_reports WHERE name = 'Report 00001'")).scalar()
            alert = conn.execute(sa.text("SELECT id FROM alerts WHERE name = 'Alert 0001'")).scalar()
        engine.dispose()
        return run(args.dsn, args.big_report or str(report), str(alert), args.requests, args.workers, args.baseline)
    with seeded_database(keep=args.keep, **sizes_from(args)) as (url, seeded):
        print(f"seeded in {seeded.seconds:.0f} s" + (f"; kept: {url}" if args.keep else ""))
        return run(url, seeded.big_report_id, seeded.big_alert_id, args.requests, args.workers, args.baseline)


if __name__ == "__main__":
    sys.exit(main())
