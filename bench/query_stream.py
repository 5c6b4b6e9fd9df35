"""Rows per second streamed from PostgreSQL: the query engine against a bare psycopg server-side cursor.

Both read the same generated query (int, numeric, timestamptz, text) in batches of
the engine's size; the engine adds the READ ONLY transaction, the deadline timers,
pooling and type checks. Prints rows/s for each, their ratio (target: >= 0.80) and
the peak RSS growth while streaming.

    .venv/bin/python bench/query_stream.py [--rows 1000000] [--repeat 3] [--dsn postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config import load_settings  # noqa: E402
from shared.models import DataSource, SavedQuery  # noqa: E402
from shared.query.engine import BATCH_ROWS, open_stream  # noqa: E402
from shared.query.sources import SourceEngines  # noqa: E402
from shared.security.crypto import SecretBox  # noqa: E402

SQL = (
    "select g as id, (g % 1000)::numeric / 7 as amount,"
    " timestamptz '2024-01-01' + g * interval '1 second' as at, 'row ' || g as label"
    " from generate_series(1, {rows}) g"
)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler:
    """Peak RSS growth, sampled every N rows (cheap enough not to skew the timing)."""

    def __init__(self) -> None:
        gc.collect()
        self.base = rss_mb()
        self.peak = self.base

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb())

    @property
    def growth(self) -> float:
        return max(self.peak, rss_mb()) - self.base


def bare(dsn: str, sql: str) -> tuple[int, float, float]:
    sampler = Sampler()
    started = time.perf_counter()
    count = 0
    with psycopg.connect(dsn) as conn:
        # Same session zone as the engine's run, so timestamptz values are built the same way.
        conn.execute("SET TimeZone = 'Europe/Berlin'")
        with conn.transaction():
            cursor = conn.cursor(name="bench_bare")
            cursor.execute(sql)
            while rows := cursor.fetchmany(BATCH_ROWS):
                for _row in rows:
                    count += 1
                if count % 100_000 < BATCH_ROWS:
                    sampler.sample()
            cursor.close()
    return count, time.perf_counter() - started, sampler.growth


class _OneSource:
    def __init__(self, source: DataSource):
        self.source = source

    def get(self, _model, _id):
        return self.source


def engine(engines: SourceEngines, settings, source: DataSource, sql: str) -> tuple[int, float, float]:
    query = SavedQuery(name="bench", kind="sql", data_source_id=source.id, sql=sql)
    sampler = Sampler()
    started = time.perf_counter()
    count = 0
    with open_stream(_OneSource(source), query, engines=engines, settings=settings, timezone="Europe/Berlin") as stream:
        for _row in stream:
            count += 1
            if count % 100_000 == 0:
                sampler.sample()
    return count, time.perf_counter() - started, sampler.growth


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


READER = "biapp_bench_reader"


def reader_role(admin_dsn: str) -> str:
    """A LOGIN role with no privileges (generate_series needs none), created once by the admin DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {READER} LOGIN")
    return READER


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--dsn", default=os.environ.get("BIAPP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    parts = urlsplit(args.dsn)
    settings = load_settings(
        {
            "BIAPP_DATABASE_URL": "sqlite:///:memory:",
            "BIAPP_BROKER_URL": "memory://",
            "BIAPP_SECRET_KEY": "bench-" + "x" * 40,
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_MAX_REPORT_ROWS": str(args.rows),
            "BIAPP_QUERY_TIMEOUT_S": "600",
        }
    )
    source = DataSource(
        id=uuid.uuid4(),
        name="bench",
        kind="postgresql",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=parts.path.lstrip("/") or "postgres",
        # Data sources refuse superuser logins: the engine side reads as a plain login role.
        username=reader_role(args.dsn),
        options={},
        updated_at=datetime.now(UTC),
    )
    engines = SourceEngines(settings, SecretBox(settings.fernet_keys))
    sql = SQL.format(rows=args.rows)
    results: dict[str, list[tuple[int, float, float]]] = {"bare": [], "engine": []}
    for _ in range(args.repeat):  # interleaved so both see the same machine state
        results["bare"].append(bare(args.dsn, sql))
        results["engine"].append(engine(engines, settings, source, sql))
    engines.dispose()

    versions = f"Python {platform.python_version()}; psycopg {psycopg.__version__}"
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; {versions}")
    print(
        f"query: {args.rows:,} rows (int, numeric, timestamptz, text), batches of {BATCH_ROWS}, best of {args.repeat}"
    )
    best = {}
    for name, runs in results.items():
        count, seconds, _growth = min(runs, key=lambda r: r[1])
        assert count == args.rows, f"{name} streamed {count} rows"
        best[name] = count / seconds
        peak = max(r[2] for r in runs)
        print(f"{name:>7}: {best[name]:>12,.0f} rows/s  ({seconds:.2f} s)  peak RSS growth {peak:.1f} MB")
    ratio = best["engine"] / best["bare"]
    print(f"  ratio: engine / bare = {ratio:.2f}  (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
