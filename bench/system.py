"""What the pipeline benchmarks share: a whole system of their own on the machine's PostgreSQL and RabbitMQ.

`BenchSystem` creates an application database (migrated), a RabbitMQ vhost, a data database with an
`orders` table read by a SELECT-only login, and the environment `biapp` processes need; everything is
dropped when the `with` block ends. `start_worker` runs a `biapp worker` on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from bench.dispatch import AMQP_HOST, PG_ADMIN, rabbitmqctl  # noqa: E402
from shared import users  # noqa: E402
from shared.db import make_engine, make_session_factory  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.models import DataSource  # noqa: E402

READER = "biapp_bench_reader"
COLUMNS = "order_id, customer, region, product, quantity, amount, ordered_on, shipped_at"


def admin(database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + f"/{database}", autocommit=True)


def make_data(name: str, rows: int) -> None:
    """A data database `name` with `rows` orders (8 columns of the usual types), readable by READER."""
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f"DO $$ BEGIN CREATE ROLE {READER} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    with admin(name) as conn:
        conn.execute(
            "CREATE TABLE orders AS SELECT g AS order_id, 'Customer ' || (g % 997) AS customer,"
            " (ARRAY['North','South','East','West'])[1 + g % 4] AS region, 'Product ' || (g % 53) AS product,"
            " 1 + g % 17 AS quantity, round((g * 7.31) % 10000, 2)::numeric(12,2) AS amount,"
            " date '2026-01-01' + (g % 330) AS ordered_on,"
            " timestamptz '2026-01-01 08:00+00' + make_interval(mins => g * 7) AS shipped_at"
            f" FROM generate_series(1, {rows}) AS g"
        )
        conn.execute("ALTER TABLE orders ADD PRIMARY KEY (order_id)")
        conn.execute(f"GRANT SELECT ON orders TO {READER}")
        conn.execute("ANALYZE orders")


class BenchSystem:
    """An application database, a vhost, a data database of `rows` orders and the settings, for one `with`."""

    def __init__(self, name: str, rows: int, **settings: str):
        tag = uuid.uuid4().hex[:8]
        self.app_db, self.data_db, self.vhost = f"biapp_bench_{name}_{tag}", f"biapp_bench_data_{tag}", f"biapp_{tag}"
        self.rows = rows
        self.workdir = Path(tempfile.mkdtemp(prefix=f"biapp-bench-{name}-"))
        self.db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{self.app_db}"
        self.amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/%2F?heartbeat=60"
        self.settings = settings
        self.env: dict[str, str] = {}
        self.factory = None
        self._engine = None

    def __enter__(self) -> BenchSystem:
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.app_db}"')
        make_data(self.data_db, self.rows)
        if rabbitmqctl("add_vhost", self.vhost) and rabbitmqctl(
            "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"
        ):
            self.amqp = f"amqp://guest:guest@{AMQP_HOST}:5672/{self.vhost}?heartbeat=60"
        self.env = {
            **os.environ,
            "BIAPP_DATABASE_URL": self.db_url,
            "BIAPP_BROKER_URL": self.amqp,
            "BIAPP_SECRET_KEY": "bench-secret-" + "x" * 32,
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_OUTBOUND_ALLOW": "127.0.0.0/8",
            "BIAPP_LOG_FORMAT": "text",
            "BIAPP_ARTIFACT_STORE": f"filesystem:{self.workdir / 'artifacts'}",
            **self.settings,
        }
        upgrade(self.db_url)
        self._engine = make_engine(self.db_url)
        self.factory = make_session_factory(self._engine)
        return self

    def __exit__(self, *_exc) -> None:
        if self._engine is not None:
            self._engine.dispose()
        with admin() as conn:
            for name in (self.app_db, self.data_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        rabbitmqctl("delete_vhost", self.vhost)
        shutil.rmtree(self.workdir, ignore_errors=True)


def add_owner_and_source(session, data_db: str) -> tuple:
    """An analyst and a PostgreSQL data source on `data_db` read by READER (flushed): (owner, source)."""
    owner = users.create_user(session, email="bench@example.com", password="correct horse battery", role="analyst")
    port = int(psycopg.conninfo.conninfo_to_dict(PG_ADMIN).get("port") or 5432)
    source = DataSource(
        name="Sales", kind="postgresql", host="127.0.0.1", port=port, database=data_db, username=READER, options={}
    )
    session.add(source)
    session.flush()
    return owner, source


def start_worker(service: str, env: dict, extra: list[str], log: Path, tree: Path = ROOT) -> subprocess.Popen:
    """`biapp worker SERVICE EXTRA…` from `tree` (this checkout, or a worktree of another revision)."""
    handle = open(log, "w")  # noqa: SIM115 (the process keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "worker", service, *extra],
        env={**env, "PYTHONPATH": str(tree)},
        cwd=tree,
        stdout=handle,
        stderr=subprocess.STDOUT,
        process_group=0,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=120)
