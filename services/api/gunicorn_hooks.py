"""gunicorn server hooks of `biapp api` (services/cli.py passes this module as --config).

Prometheus multiprocess mode: every worker writes its series to files in $PROMETHEUS_MULTIPROC_DIR and
/metrics adds them up. A worker that exits has its live gauges dropped (its counters keep counting in the
sum, as they should); the directory is removed when the server stops if `biapp api` made it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

OWN_PREFIX = "biapp-api-metrics-"  # services/cli.py API_METRICS_PREFIX


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""))
    if path.name.startswith(OWN_PREFIX) and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)
