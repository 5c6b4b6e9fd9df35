"""Renderer memory: peak RSS of a real `biapp worker renderer` rendering 10k, 100k and 1M rows.

    .venv/bin/python bench/render_memory.py [--sizes 10000,100000,1000000] [--baseline REV] [--formats xlsx,csv,pdf]

For each size a fresh worker (one process, one thread) renders one run of a report reading that
many rows from PostgreSQL into XLSX + CSV + PDF (the PDF holds the first BIAPP_PDF_MAX_ROWS),
and the highest VmHWM among its processes is the figure. With --baseline (default HEAD, i.e. the
last commit) the same runs are made by the worker as it was at that revision (a git worktree),
in the same run, so both columns share the machine's mood. The claim: the largest and smallest
peaks stay within 1.5× of each other. Needs PostgreSQL and RabbitMQ like the other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from dispatch import AMQP_HOST, PG_ADMIN, machine, rabbitmqctl  # noqa: E402
from fairness import COLUMNS, consumers  # noqa: E402
from pipeline import READER, admin, make_data  # noqa: E402

from shared import runs, users  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import QUEUE_RENDERER, RENDER_REPORT, BrokerPublisher, build_broker  # noqa: E402
from shared.models import DataSource, ReportExecution, SavedQuery, ScheduledReport  # noqa: E402


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            found.extend(map(int, children))
            todo.extend(map(int, children))
    return found


def peak_rss_mb(pid: int) -> float:
    peaks = [0.0]
    for candidate in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks)


def seed(factory, data_db: str, sizes: list[int], formats: list[str]) -> tuple[dict[int, uuid.UUID], uuid.UUID]:
    port = int(__import__("psycopg").conninfo.conninfo_to_dict(PG_ADMIN).get("port") or 5432)
    with transaction(factory) as session:
        owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
        source = DataSource(
            name="Sales", kind="postgresql", host="127.0.0.1", port=port, database=data_db, username=READER, options={}
        )
        session.add(source)
        session.flush()
        reports = {}
        for size in sizes:
            sql = f"select {COLUMNS} from orders where order_id <= {size} order by order_id"
            query = SavedQuery(name=f"{size} orders", kind="sql", data_source_id=source.id, sql=sql, owner_id=owner.id)
            session.add(query)
            session.flush()
            report = ScheduledReport(
                owner_id=owner.id,
                name=f"Orders {size}",
                saved_query_id=query.id,
                schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
                recipients=["team@example.com"],
                formats=formats,
            )
            session.add(report)
            session.flush()
            reports[size] = report.id
        return reports, owner.id


def render_once(tree: Path, args: list[str], env: dict, factory, publisher, report_id, owner_id, log: Path):
    """A fresh worker from `tree` renders one run; returns (peak RSS MB, seconds)."""
    worker_env = {**env, "PYTHONPATH": str(tree)}
    with open(log, "w") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", "renderer", *args],
            env=worker_env,
            cwd=tree,
            stdout=handle,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        deadline = time.monotonic() + 120
        while not consumers(env["BIAPP_BROKER_URL"], QUEUE_RENDERER):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the renderer from {tree} did not start; see {log}")
            time.sleep(0.2)
        with transaction(factory) as session:
            owner = session.get(users.User, owner_id)
            report = session.get(ScheduledReport, report_id)
            execution_id = runs.create_execution(
                session, report, trigger="manual", now=datetime.now(UTC), requester=owner
            ).id
        started = time.perf_counter()
        publisher.send(RENDER_REPORT, str(execution_id))
        while True:
            with factory() as session:
                status, error = session.execute(
                    sa.select(ReportExecution.status, ReportExecution.error).where(ReportExecution.id == execution_id)
                ).one()
            if status not in ("queued", "running"):
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        if status != "rendered":
            raise SystemExit(f"render ended {status}: {error}")
        return peak_rss_mb(worker.pid), seconds
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with ('' for none)")
    parser.add_argument("--formats", default="xlsx,csv,pdf")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = args.formats.split(",")

    tag = uuid.uuid4().hex[:8]
    app_db, data_db, vhost = f"biapp_bench_mem_{tag}", f"biapp_bench_data_{tag}", f"biapp_bench_{tag}"
    workdir = Path(tempfile.mkdtemp(prefix="biapp-bench-memory-"))
    trees = {"current": ROOT}
    if args.baseline:
        baseline = workdir / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline], check=True
        )
        trees = {f"baseline ({args.baseline})": baseline, "current": ROOT}
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{app_db}"')
    make_data(data_db, max(sizes))
    amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/%2F?heartbeat=60"
    if rabbitmqctl("add_vhost", vhost) and rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}?heartbeat=60"
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{app_db}"
    env = {
        **os.environ,
        "BIAPP_DATABASE_URL": db_url,
        "BIAPP_BROKER_URL": amqp,
        "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
        "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
        "BIAPP_LOG_FORMAT": "text",
        "BIAPP_MAX_REPORT_ROWS": str(max(max(sizes), 1_000_000)),
        "BIAPP_ARTIFACT_STORE": f"filesystem:{workdir / 'artifacts'}",
    }
    try:
        upgrade(db_url)
        factory = make_session_factory(make_engine(db_url))
        reports, owner_id = seed(factory, data_db, sizes, formats)
        broker = build_broker(load_settings(env))
        publisher = BrokerPublisher(broker)
        print(f"machine: {machine()}; formats {'+'.join(formats)}; one fresh worker per render")
        results: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in trees}
        for size in sizes:
            for name, tree in trees.items():
                extra = ["--processes", "1", "--threads", "1"] + (["--lane", "main"] if tree == ROOT else [])
                log = workdir / f"{name.split()[0]}-{size}.log"
                results[name][size] = render_once(tree, extra, env, factory, publisher, reports[size], owner_id, log)
                peak, seconds = results[name][size]
                print(f"  {name:<22} {size:>9,} rows: peak RSS {peak:6.0f} MB, {seconds:6.1f} s")
        for name, by_size in results.items():
            peaks = [peak for peak, _ in by_size.values()]
            print(f"{name}: largest / smallest peak = {max(peaks) / min(peaks):.2f}")
        broker.close()
    finally:
        make_engine(db_url).dispose()
        with admin() as conn:
            for name in (app_db, data_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        rabbitmqctl("delete_vhost", vhost)
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(workdir / "baseline")])
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
