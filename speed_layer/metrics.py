"""The speed layer's Prometheus metrics (docs/operations.md lists them), served on `[metrics] speed_port`.

`python -m speed_layer stream` runs its two queries in two processes; both count into one folder
(prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set before this module is
imported) and the parent serves the sum. In one process (tests, spark-submit) the process's own
registry is used.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS_READ = Counter("readnext_speed_events_read_total", "Kafka records read, by query", ["query"])
EVENTS_VALID = Counter("readnext_speed_events_valid_total", "Valid events stored in the master dataset")
EVENTS_DEAD = Counter("readnext_speed_events_dead_lettered_total", "Records sent to the dead-letter topic")
EVENTS_APPLIED = Counter("readnext_speed_events_applied_total", "Valid events folded into the speed view")
BATCH_SECONDS = Histogram(
    "readnext_speed_batch_duration_seconds",
    "Time a micro-batch's handler takes, by query",
    ["query"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LATENCY = Histogram(
    "readnext_speed_latency_seconds",
    "From the broker's append time of an event to its reader's speed row written",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
LAG = Gauge(
    "readnext_speed_consumer_lag_records",
    "Records on the ratings topic that a query has not read yet, by query and partition",
    ["query", "partition"],
    multiprocess_mode="livemax",
)
TRIGGER_SECONDS = Histogram(
    "readnext_speed_trigger_part_seconds",
    "Each part of a micro-batch as Spark's progress reports it (durationMs), sampled once a second, by query and part",
    ["query", "part"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
READERS = Counter("readnext_speed_readers_refolded_total", "Readers folded in again and written to the speed view")
REBASES = Counter("readnext_speed_rebases_total", "Times the speed view was rebased on a new generation")
for _query in ("speed", "master"):  # a series from the start, not from the first event
    EVENTS_READ.labels(_query)
    BATCH_SECONDS.labels(_query)


def _offsets(text: str | None) -> dict[str, dict[str, int]] | None:
    """A Kafka source's offsets as its progress reports them: JSON text {topic: {partition: offset}}."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def record_lag(query: str, progress: dict[str, Any] | None) -> None:
    """Per-partition lag from a query's last progress: the latest offset minus the end offset read."""
    for source in (progress or {}).get("sources", []):
        latest, end = (_offsets(source.get(k)) for k in ("latestOffset", "endOffset"))
        if latest is None or end is None:
            continue
        for topic, partitions in latest.items():
            for partition, offset in partitions.items():
                LAG.labels(query, partition).set(max(0, int(offset) - int(end.get(topic, {}).get(partition, 0))))


def record_parts(query: str, progress: dict[str, Any] | None, seen: int) -> int:
    """Observe the parts of the query's last micro-batch unless batch `seen` was it; returns its batch id.

    Called with each lag reading (once a second), so it samples about one micro-batch a second:
    a Python listener on every progress event cost the speed job's JVM 13% of a core here. The
    parts (Spark's durationMs): latestOffset (Kafka's end offsets), queryPlanning, getBatch,
    walCommit and commitOffsets (the checkpoint's offset and commit logs), addBatch (the
    foreachBatch handler) and triggerExecution (the whole micro-batch).
    """
    batch = int((progress or {}).get("batchId", -1))
    if batch == seen or batch < 0:
        return seen
    for part, ms in (progress.get("durationMs") or {}).items():
        TRIGGER_SECONDS.labels(query, part).observe(ms / 1000)
    return batch
