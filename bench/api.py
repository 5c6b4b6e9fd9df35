"""API throughput: `biapp api` with its defaults, the previous commit against the working tree, under wrk.

    .venv/bin/python bench/api.py [--baseline REV] [--duration 15] [--warmup 3] [--connections 16]

Creates its own PostgreSQL database (BIAPP_BENCH_PG_ADMIN, default postgresql://postgres@127.0.0.1:5432/
postgres), migrates it, seeds an admin and --reports reports with --executions runs each, then serves it with
`biapp api` from two trees one after the other: the baseline (default HEAD, i.e. what is committed, checked
out with `git worktree add` into a temporary directory and run with this Python, PYTHONPATH on the worktree)
and the working tree. Each runs with its own defaults (workers, threads). For each, wrk (--connections, 2
threads, a warm-up first) loads the reports list (limit=50) and one report's detail with a bearer token;
the table gives requests/s, latency p50/p99, the API's RSS (master and workers, from /proc) after the runs,
and the ratio current / baseline. Needs `wrk` (scripts/ensure_bench_packages.sh) and RabbitMQ at
BIAPP_BENCH_AMQP_HOST (default 127.0.0.1, guest/guest) for the API's readiness check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
import requests  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from dispatch import AMQP_HOST, PG_ADMIN, machine  # noqa: E402

from shared import users  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.models import ReportExecution, SavedQuery, ScheduledReport  # noqa: E402

EMAIL, PASSWORD = "bench-admin@example.com", "correct horse battery staple"
PATHS = {"reports list (limit=50)": "/api/scheduled-reports?limit=50", "report detail": "/api/scheduled-reports/{id}"}


def seed(factory, reports: int, executions: int) -> str:
    """An admin, one saved query, `reports` daily reports with `executions` finished runs each."""
    now = datetime.now(UTC).replace(microsecond=0)
    with transaction(factory) as session:
        admin = users.create_user(session, email=EMAIL, password=PASSWORD, role="admin")
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1", owner_id=admin.id)
        session.add(query)
        session.flush()
        first = None
        for i in range(reports):
            report = ScheduledReport(
                id=uuid.uuid4(),
                owner_id=admin.id,
                name=f"Report {i:03d}",
                saved_query_id=query.id,
                schedule={"frequency": "daily", "time": f"{i % 24:02d}:{i % 60:02d}", "timezone": "Europe/Berlin"},
                timezone="Europe/Berlin",
                recipients=[f"r{i}@example.com", f"s{i}@example.com"],
                cc=[],
                formats=["xlsx", "csv"],
                subject="Report {{date}}",
                send_if_empty=True,
                csv_bom=False,
                is_active=True,
                next_run_at=now + timedelta(hours=1 + i % 24),
            )
            session.add(report)
            session.flush()
            first = first or report.id
            for day in range(executions):
                at = now - timedelta(days=day + 1)
                session.add(
                    ReportExecution(
                        report_id=report.id,
                        trigger="schedule",
                        status="success" if (i + day) % 7 else "failed",
                        scheduled_for=at,
                        queued_at=at,
                        started_at=at + timedelta(seconds=1),
                        finished_at=at + timedelta(seconds=3),
                        row_count=100 + i,
                        attempts=1,
                        recipients=[f"r{i}@example.com"],
                    )
                )
        return str(first)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wrk(url: str, token: str, args, seconds: int) -> dict:
    command = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{seconds}s", "--latency"]
    out = subprocess.run(
        [*command, "-H", f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def percentile(p: str) -> str:
        match = re.search(rf"^\s+{p}%\s+(\S+)", out, re.MULTILINE)
        return match.group(1) if match else "?"

    return {
        "rps": rps,
        "p50": percentile("50"),
        "p99": percentile("99"),
        "errors": int(errors.group(1)) if errors else 0,
    }


def serve(tree: Path, env: dict, args, report_id: str) -> dict:
    """`biapp api` from `tree` with its defaults, then wrk on each path; figures per path, and the RSS."""
    port = free_port()
    env = {**env, "PYTHONPATH": str(tree)}
    where = subprocess.run(
        [sys.executable, "-c", "import services; print(services.__file__)"], env=env, cwd=tree, capture_output=True
    )
    assert where.stdout.decode().startswith(str(tree)), f"{tree}: imports {where.stdout.decode()!r}"
    log = open(Path(tempfile.gettempdir()) / f"biapp-bench-api-{os.getpid()}-{tree.name}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from services.cli import main; sys.exit(main())", "api", "--host",
         "127.0.0.1", "--port", str(port)],
        env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API from {tree} did not start; see {log.name}")
            time.sleep(0.3)
        login = requests.post(f"{base}/api/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
        token = login.json()["access_token"]
        figures = {}
        for label, path in PATHS.items():
            url = base + path.format(id=report_id)
            check = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert check.status_code == 200, (url, check.status_code, check.text[:200])
            wrk(url, token, args, args.warmup)
            figures[label] = wrk(url, token, args, args.duration)
        pids = [process.pid, *children(process.pid)]  # gunicorn's master (exec'd by biapp api) and workers
        figures["rss_kb"], figures["processes"] = rss_kb(pids), len(pids)
        return figures
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="the git revision to compare with (default HEAD)")
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--executions", type=int, default=5)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: bash scripts/ensure_bench_packages.sh", file=sys.stderr)
        return 1

    revision = subprocess.run(
        ["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    worktree = Path(tempfile.mkdtemp(prefix="biapp-bench-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), revision], cwd=ROOT, check=True)
    name = f"biapp_bench_api_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    try:
        upgrade(db_url)  # the working tree's schema: a superset of the baseline's
        engine = make_engine(db_url)
        report_id = seed(make_session_factory(engine), args.reports, args.executions)
        engine.dispose()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BIAPP_", "PROMETHEUS_"))},
            "BIAPP_DATABASE_URL": db_url,
            "BIAPP_BROKER_URL": f"amqp://guest:guest@{AMQP_HOST}:5672/%2F",
            "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_LOG_LEVEL": "WARNING",
        }
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"machine: {machine()}, load: {load.split('load average:')[-1].strip()}")
        print(
            f"{args.reports} reports x {args.executions} runs; wrk -t{args.wrk_threads} -c{args.connections} "
            f"-d{args.duration}s after {args.warmup}s warm-up; `biapp api` with its defaults\n"
        )
        results = {}
        for label, tree in ((f"baseline {revision}", worktree), ("working tree", ROOT)):
            results[label] = serve(tree, env, args, report_id)
            print(f"  {label}: done", flush=True)
        print()
        width = 26
        print(f"{'':<{width}} {'tree':<16} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
        for path in PATHS:
            for label, figures in results.items():
                f = figures[path]
                print(f"{path:<{width}} {label:<16} {f['rps']:>9.1f} {f['p50']:>9} {f['p99']:>9} {f['errors']:>8}")
            (base, current) = (figures[path]["rps"] for figures in results.values())
            print(f"{'':<{width}} ratio current / baseline: {current / base:.2f}x\n")
        for label, figures in results.items():
            print(f"RSS {label}: {figures['rss_kb'] / 1024:.0f} MiB in {figures['processes']} processes")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
        shutil.rmtree(worktree.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
