"""Every layer's metrics through a real Prometheus: the speed job, the batch service and the web server running
as processes of their own on a sandbox, scraped by a Prometheus with the generated configuration and rules.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from werkzeug.serving import make_server

from deploy import prometheus
from deploy.init import init
from readnext.accounts import Tokens
from readnext.clients import hbase_connection
from readnext.config import PROJECT_ROOT, load_config, sandbox_env
from readnext.events import RatingProducer
from serving_layer.app import create_app
from tests.data import batch_on_small_data
from tests.waiting import wait_for

DOCUMENTED = re.compile(r"^\| `(readnext_[a-z0-9_]+)` \|", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""


def _families(text: str) -> set[str]:
    """The readnext_ metric families of a scrape (without prometheus_client's `_created` companions)."""
    return {n for n in re.findall(r"^# HELP (readnext_\w+)", text, re.MULTILINE) if not n.endswith("_created")}


def _query(port: int, expr: str) -> list:
    body = _get(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}")
    return json.loads(body)["data"]["result"] if body else []


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def test_prometheus_scrapes_every_layer_and_every_documented_metric_and_rule(stack, tmp_path, unique_name):
    ports = {name: _free_port() for name in ("speed", "batch", "web", "prometheus")}
    env = dict(os.environ, **sandbox_env(tmp_path, unique_name))
    env.update(
        {
            "READNEXT_SPEED_MASTER_TRIGGER_S": "1",
            "READNEXT_SPARK_DRIVER_MEMORY": "1g",
            "READNEXT_MODEL_RANK": "8",
            "READNEXT_MODEL_ITERATIONS": "4",
            "READNEXT_BATCH_CHECK_S": "2",
            "READNEXT_METRICS_SPEED_PORT": str(ports["speed"]),
            "READNEXT_METRICS_BATCH_PORT": str(ports["batch"]),
            "READNEXT_METRICS_WEB_TARGET": f"127.0.0.1:{ports['web']}",
            "READNEXT_METRICS_PROMETHEUS_PORT": str(ports["prometheus"]),
            "READNEXT_METRICS_SCRAPE_INTERVAL_S": "1",
        }
    )
    config = load_config(env=env)
    config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, enabled=False))
    batch_on_small_data(tmp_path, env, "ingest", seed=5, users=60)
    init(config)
    prometheus.write(config, tmp_path / "prometheus")
    command = prometheus.command(tmp_path / "prometheus", tmp_path / "tsdb", ports["prometheus"])
    processes = [
        subprocess.Popen(command, stdout=(tmp_path / "prometheus.log").open("ab"), stderr=subprocess.STDOUT),
        _start(["batch_layer", "serve"], env, tmp_path / "batch.log"),  # no generation yet: it makes the first
        _start(["speed_layer", "stream"], env, tmp_path / "speed.log"),
    ]
    app = create_app(config)
    server = make_server("127.0.0.1", ports["web"], app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scrape = {name: f"http://127.0.0.1:{ports[name]}/metrics" for name in ("speed", "batch", "web")}
        wait_for(
            lambda: 'readnext_batch_runs_total{outcome="success"} 1.0' in _get(scrape["batch"]),
            "the batch service's first generation",
            timeout=420,
        )
        wait_for(lambda: "speed layer metrics at" in (tmp_path / "speed.log").read_text(), "the speed job", 300)
        producer = RatingProducer(config)
        for book, stars in ((3, 5), (9, 4), (14, 5)):
            producer.send(700001, book, stars)
        producer.send_raw(b"700001", b'{"user_id": 700001, "book_id": 3}')  # no rating: dead-lettered
        producer.flush()
        producer.close()
        wait_for(
            lambda: (
                "readnext_speed_events_applied_total 3.0" in _get(scrape["speed"])
                and "readnext_speed_events_dead_lettered_total 1.0" in _get(scrape["speed"])
            ),
            "the speed job to apply three events and dead-letter one",
            timeout=180,
        )
        conn = hbase_connection(config)
        reader = {"Authorization": f"Bearer {Tokens(conn, config).issue_reader(700001)}"}
        conn.close()
        client = app.test_client()
        assert client.get("/api/v1/users/700001/recommendations", headers=reader).get_json()["source"] == "speed"
        assert (
            client.post("/api/v1/recommendations", json={"ratings": [{"book_id": 3, "rating": 5}]}).status_code == 200
        )
        assert client.get("/api/v1/books/search?q=book").status_code == 200

        documented = set(DOCUMENTED.findall((PROJECT_ROOT / "docs" / "operations.md").read_text()))
        scraped = set().union(*(_families(_get(url)) for url in scrape.values()))
        assert scraped == documented, "docs/operations.md and the layers' metrics differ"

        port = ports["prometheus"]
        wait_for(lambda: len(_query(port, "up == 1")) == 3, "Prometheus to scrape all three layers", 60)
        for name in sorted(documented):
            series = f'{{__name__=~"{name}(_bucket|_count|_sum)?"}}'
            wait_for(lambda s=series: _query(port, f"count({s})"), f"{name} in Prometheus", 60)
        for query in ("speed", "master"):  # recorded from each query's progress once its batch has ended
            lag = f'readnext_speed_consumer_lag_records{{query="{query}"}}'
            wait_for(lambda q=lag: _query(port, q), f"the {query} query's lag per partition in Prometheus", 60)
        generated = set(prometheus.RECORDING) | {a["alert"] for a in prometheus.alerts(config)}

        def evaluated() -> set[str]:
            groups = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/rules") or '{"data": {"groups": []}}')
            rules = [r for g in groups["data"]["groups"] for r in g["rules"]]
            return {r["name"] for r in rules if r.get("health") == "ok"}

        wait_for(lambda: evaluated() == generated, "every recording rule and alert evaluated without error", 60)
        assert _query(port, "readnext:batch_generation_age_seconds")[0]["value"][1] != "NaN"
    finally:
        server.shutdown()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)
