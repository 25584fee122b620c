"""The running system at a glance, for operators: /status in the web UI and /api/v1/status as JSON.

One function gathers it: the served generation (id, age, data cutoff, size, BLAS, training
time), the quality of the last generations (from the generations record), the speed layer's
lag, throughput and latency (from the stack's Prometheus, which scrapes it), and whether Kafka,
HBase, the metastore, the artifact store and Prometheus answer. Each check has a short
timeout and reports its own failure: the page shows what is down instead of failing.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import Any

from readnext import artifacts
from readnext.clients import kafka_admin
from readnext.config import Config
from readnext.metrics import query_prometheus
from readnext.views import GenerationRecords
from serving_layer.state import ServingState

HISTORY = 12
_TIMEOUT_S = 2.0
SPEED_QUERIES = {
    "lag_records": "readnext:speed_consumer_lag_records:max",
    "events_per_s": "sum(rate(readnext_speed_events_applied_total[1m]))",
    "latency_p99_s": "readnext:speed_latency_seconds:p99_5m",
}


def _check(work: Any) -> dict[str, Any]:
    """{"ok": True, "detail": what work() says} or {"ok": False, "detail": the error}."""
    try:
        return {"ok": True, "detail": work()}
    except Exception as e:  # noqa: BLE001 - a status page reports failures, it does not raise them
        return {"ok": False, "detail": f"{type(e).__name__}: {str(e)[:200]}"}


def _metastore(config: Config) -> str:
    """The metastore server's address answers a TCP connection (embedded Derby has no server)."""
    address = config.spark.metastore_uri or config.spark.metastore_jdbc_url
    if not address:
        return "embedded Derby (one Spark application at a time)"
    parsed = urllib.parse.urlparse(address.removeprefix("jdbc:"))
    with socket.create_connection((parsed.hostname, parsed.port), timeout=_TIMEOUT_S):
        return f"{parsed.hostname}:{parsed.port} answers"


def _kafka(config: Config) -> str:
    admin = kafka_admin(config, bootstrap_timeout_ms=2000, request_timeout_ms=2000)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
    if config.kafka.ratings_topic not in topics:
        raise RuntimeError(f"topic {config.kafka.ratings_topic} is missing")
    return f"{len(topics)} topics, {config.kafka.ratings_topic} among them"


def _generation(state: ServingState) -> dict[str, Any] | None:
    snap = state.snapshot()
    if snap is None:
        return None
    manifest = snap.model.manifest
    return {
        "id": snap.model.generation,
        "created_at": manifest["created_at"],
        "age_s": round(artifacts.age_s(manifest)),
        "data_cutoff": manifest.get("data_cutoff"),
        "counts": manifest.get("counts", {}),
        "blas": manifest.get("blas"),
        "training_s": manifest.get("training_s"),
        "rank": manifest.get("model", {}).get("rank"),
        "books_served": len(snap.catalog.books),
    }


def report(state: ServingState) -> dict[str, Any]:
    """Everything /status shows, as one JSON-ready document."""
    config = state.config
    generation = _check(lambda: _generation(state))
    history = _check(lambda: state.hbase(lambda conn: GenerationRecords(conn, config).history(HISTORY)))
    quality = [
        {
            "generation": g["generation"],
            "created_at": g["created_at"],
            "ndcg_at_10": g["metrics"].get("als", {}).get("ndcg@10"),
            "coverage": g["metrics"].get("als", {}).get("coverage"),
        }
        for g in (history["detail"] if history["ok"] else [])
    ]
    speed = _check(lambda: {k: query_prometheus(config, q) for k, q in SPEED_QUERIES.items()})
    health = {
        "kafka": _check(lambda: _kafka(config)),
        "hbase": _check(lambda: f"{len(state.hbase(lambda conn: conn.tables()))} tables"),
        "metastore": _check(lambda: _metastore(config)),
        "artifacts": _check(
            lambda: f"current: {artifacts.current_generation(artifacts.open_store(config)) or 'none yet'}"
        ),
        "prometheus": _check(lambda: f"{query_prometheus(config, 'count(up == 1)') or 0:.0f} layers scraped"),
    }
    return {
        "generation": generation["detail"] if generation["ok"] else None,
        "quality": quality,
        "speed_layer": speed["detail"] if speed["ok"] else None,
        "health": health,
    }


def chart(quality: list[dict[str, Any]], width: int = 480, height: int = 160) -> dict[str, str]:
    """SVG polyline points of NDCG@10 and coverage over the generations, on one 0..max scale."""
    values = [q[k] for q in quality for k in ("ndcg_at_10", "coverage") if q[k] is not None]
    top = max(values, default=1.0) * 1.1 or 1.0
    step = width / max(len(quality) - 1, 1)

    def points(key: str) -> str:
        return " ".join(
            f"{i * step:.1f},{height - q[key] / top * height:.1f}" for i, q in enumerate(quality) if q[key] is not None
        )

    return {"ndcg_at_10": points("ndcg_at_10"), "coverage": points("coverage"), "top": f"{top:.2f}"}
