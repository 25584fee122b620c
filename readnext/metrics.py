"""Serving a long-running process's Prometheus metrics over HTTP (prometheus_client's own server).

The speed layer's two processes count into one folder (prometheus_client's multiprocess mode):
`multiprocess_folder` empties it and points `PROMETHEUS_MULTIPROC_DIR` at it, which must happen
before any metric is defined, and the parent serves the sum. A port already taken is logged,
not fatal: metrics never stop a layer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from readnext.config import Config

log = logging.getLogger(__name__)


def multiprocess_folder(config: Config, name: str) -> Path:
    """An empty folder for the metrics of `name`'s processes, set as PROMETHEUS_MULTIPROC_DIR."""
    folder = config.stack.state_dir / "run" / f"metrics-{name}-{config.hbase.table_prefix}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def query_prometheus(config: Config, query: str, timeout_s: float = 2.0) -> float | None:
    """One instant value from the stack's Prometheus (`[metrics] prometheus_port`), or None when it has no result."""
    url = f"http://127.0.0.1:{config.metrics.prometheus_port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def serve(port: int, what: str) -> None:
    """Serve this process's metrics, or every process's under PROMETHEUS_MULTIPROC_DIR, on 127.0.0.1:`port`."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    try:
        start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as e:
        log.warning("%s metrics are not served: port %d: %s", what, port, e)
        return
    log.info("%s metrics at http://127.0.0.1:%d/metrics", what, port)
