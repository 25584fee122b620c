"""The stack's Prometheus: its scrape configuration and its recording and alerting rules, generated from the config.

Prometheus reads YAML, of which JSON is a subset, so both files are written with `json`. Each
alert is what an operator pages on; docs/operations.md says what each one means and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from readnext.config import Config

RECORDING = {
    "readnext:http_requests:rate5m": "sum(rate(readnext_http_requests_total[5m]))",
    "readnext:http_errors:ratio_rate5m": (
        'sum(rate(readnext_http_requests_total{status=~"5.."}[5m])) / sum(rate(readnext_http_requests_total[5m]))'
    ),
    "readnext:http_request_duration_seconds:p99_5m": (
        "histogram_quantile(0.99, sum by (le) (rate(readnext_http_request_duration_seconds_bucket[5m])))"
    ),
    "readnext:speed_consumer_lag_records:max": "max(readnext_speed_consumer_lag_records)",
    "readnext:speed_latency_seconds:p99_5m": (
        "histogram_quantile(0.99, sum by (le) (rate(readnext_speed_latency_seconds_bucket[5m])))"
    ),
    "readnext:batch_generation_age_seconds": "time() - readnext_batch_last_success_timestamp_seconds",
}


def targets(config: Config) -> dict[str, str]:
    """Scrape job → address of each layer's metrics."""
    m = config.metrics
    return {"serving": m.web_target, "speed": f"127.0.0.1:{m.speed_port}", "batch": f"127.0.0.1:{m.batch_port}"}


def alerts(config: Config) -> list[dict[str, Any]]:
    m = config.metrics
    generation_s = 2 * config.batch.interval_s

    def alert(name: str, expr: str, wait: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": wait,
            "labels": {"severity": "page"},
            "annotations": {"summary": summary},
        }

    return [
        alert(
            "ReadNextLayerDown", "up == 0", "2m", "{{ $labels.job }} metrics cannot be scraped: is the layer running?"
        ),
        alert(
            "ReadNextSpeedLayerLagging",
            f"readnext:speed_consumer_lag_records:max > {m.speed_lag_alert}",
            "5m",
            f"the speed layer is more than {m.speed_lag_alert} ratings behind Kafka",
        ),
        alert(
            "ReadNextNoRecentGeneration",
            f"readnext:batch_generation_age_seconds > {generation_s:.0f}",
            "5m",
            f"no successful batch generation for {generation_s:.0f} s (2 x [batch] interval_s)",
        ),
        alert(
            "ReadNextServingErrors",
            f"readnext:http_errors:ratio_rate5m > {m.serving_error_ratio_alert}",
            "5m",
            f"more than {m.serving_error_ratio_alert:.0%} of answers are 5xx",
        ),
        alert(
            "ReadNextServingSlow",
            f"readnext:http_request_duration_seconds:p99_5m > {m.serving_p99_alert_s}",
            "5m",
            f"serving p99 above {m.serving_p99_alert_s * 1000:.0f} ms",
        ),
    ]


def write(config: Config, folder: Path) -> Path:
    """Write prometheus.yml and rules.yml into `folder`; returns the configuration file."""
    folder.mkdir(parents=True, exist_ok=True)
    rules = folder / "rules.yml"
    groups = [
        {"name": "readnext-recording", "rules": [{"record": k, "expr": v} for k, v in RECORDING.items()]},
        {"name": "readnext-alerts", "rules": alerts(config)},
    ]
    rules.write_text(json.dumps({"groups": groups}, indent=2))
    interval = f"{config.metrics.scrape_interval_s}s"
    scrape = [{"job_name": job, "static_configs": [{"targets": [address]}]} for job, address in targets(config).items()]
    main = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": scrape,
    }
    path = folder / "prometheus.yml"
    path.write_text(json.dumps(main, indent=2))
    return path


def command(folder: Path, data: Path, port: int) -> list[str]:
    """The Prometheus command line for a configuration in `folder` and its database in `data`."""
    return [
        "prometheus",
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=7d",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
