"""gunicorn settings for the serving layer (deploy/service web): workers share their metrics through one folder.

The worker processes and their threads come from `[serving] workers` and `threads` (gthread
workers, which keep connections alive). deploy/service web empties `PROMETHEUS_MULTIPROC_DIR`
before gunicorn starts; a worker that exits is marked dead here, so its gauges leave the scrape
while its counters stay counted.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from readnext.config import load_config

_serving = load_config().serving
workers = _serving.workers
threads = _serving.threads
worker_class = "gthread"


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
