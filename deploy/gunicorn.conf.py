"""gunicorn settings for the serving layer (deploy/service web): workers share their metrics through one folder.

deploy/service web empties `PROMETHEUS_MULTIPROC_DIR` before gunicorn starts; a worker that exits
is marked dead here, so its gauges leave the scrape while its counters stay counted.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
