"""The serving layer's Prometheus metrics, and /metrics (docs/operations.md lists every metric).

Under the web server its workers share one view through prometheus_client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by `python -m serving_layer serve`); the
development server and tests use the process's own registry. The served generation and its
age are read from the scraping worker's snapshot at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from readnext import artifacts
from serving_layer.state import ServingState

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUESTS = Counter(
    "readnext_http_requests_total",
    "HTTP requests answered, by endpoint, method and status",
    ["endpoint", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "readnext_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint", ["endpoint"], buckets=_FAST
)
ANSWERS = Counter(
    "readnext_recommendations_total",
    "Recommendation answers by source: speed, batch, fold-in, popular, degraded (popular while HBase is away)",
    ["source"],
)
FOLD_IN_SECONDS = Histogram(
    "readnext_foldin_duration_seconds", "Time of an anonymous reader's exact fold-in, top-N and reasons", buckets=_FAST
)
HBASE_SECONDS = Histogram(
    "readnext_hbase_read_duration_seconds", "Time to read a reader's batch and speed rows from HBase", buckets=_FAST
)


class _Scrape:
    """What /metrics exposes: the counters of every worker, then the scraping worker's generation."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        source = MultiProcessCollector(None) if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY
        yield from source.collect()
        try:
            snap = self.state.snapshot()
        except Exception:  # noqa: BLE001 - a scrape still answers while a store is away
            return
        if snap is None:
            return
        info = GaugeMetricFamily("readnext_serving_generation_info", "The served generation", labels=["generation"])
        info.add_metric([snap.model.generation], 1)
        yield info
        age = artifacts.age_s(snap.model.manifest)
        yield GaugeMetricFamily("readnext_serving_generation_age_seconds", "Age of the served generation", value=age)


def install(app: Flask, state: ServingState) -> None:
    """Count and time every request; serve /metrics (not part of the API, not in its OpenAPI document)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(state))

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def observed(response: Any) -> Any:
        endpoint = request.endpoint or "unmatched"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if "started" in g:
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - g.started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
