"""The batch layer's Prometheus metrics (docs/operations.md lists them), served by the batch service.

The batch service (`python -m batch_layer serve`) is one long-running process that runs every
generation in itself, so it serves its own registry on `[metrics] batch_port`, and Prometheus
scrapes it like the other layers; a one-off `python -m batch_layer run` records the same
metrics but serves none (nothing would be there to scrape them before it exits).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from readnext import artifacts

RUNS = Counter("readnext_batch_runs_total", "Batch runs started by the service, by outcome", ["outcome"])
RUNS.labels("success")  # series from the start: a rate over them is 0, not missing
RUNS.labels("failure")
LAST_SUCCESS = Gauge(
    "readnext_batch_last_success_timestamp_seconds", "When the current generation was made (Unix time)"
)
RUNNING = Gauge("readnext_batch_run_in_progress", "1 while the service is running a batch run, else 0")
STAGE_SECONDS = Gauge("readnext_batch_stage_duration_seconds", "How long each stage took in the last run", ["stage"])
ROWS = Gauge(
    "readnext_batch_rows",
    "What the current generation learnt from (ratings, users, books) and the imported rating rows refused so far "
    "(rejected)",
    ["kind"],
)
EVALUATION = Gauge(
    "readnext_batch_evaluation",
    "The current generation's held-out evaluation, by model (als, popularity) and metric (ndcg@10, ...)",
    ["model", "metric"],
)


def record_generation(manifest: dict[str, Any]) -> None:
    """The current generation's time, size and evaluation, from its manifest."""
    LAST_SUCCESS.set(artifacts.created_s(manifest))
    for kind, count in manifest.get("counts", {}).items():
        ROWS.labels(kind).set(count)
    for model, values in manifest.get("metrics", {}).items():
        for metric, value in values.items():
            if metric != "users":
                EVALUATION.labels(model, metric).set(value)
