"""The web server as deploy/service web runs it (python -m serving_layer serve: granian, two workers) on the
`served` generation, and the warm-up each worker does before its first request.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import urllib.request

from readnext.config import PROJECT_ROOT
from serving_layer.app import create_app
from tests.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_two_workers_serve_readers_and_count_every_request_in_one_scrape(served, tmp_path):
    config, port = served.config, _free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_0.db").write_bytes(b"left by an earlier run")
    env = dict(
        os.environ,
        READNEXT_ARTIFACTS_URI=config.artifacts.uri,
        READNEXT_HBASE_TABLE_PREFIX=config.hbase.table_prefix,
        READNEXT_KAFKA_RATINGS_TOPIC=config.kafka.ratings_topic,
        READNEXT_KAFKA_DEAD_LETTER_TOPIC=config.kafka.dead_letter_topic,
        READNEXT_BATCH_TOP_N=str(config.batch.top_n),
        READNEXT_LIMITS_ENABLED="false",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
    )
    command = [sys.executable, "-m", "serving_layer", "serve", "--port", str(port), "--workers", "2"]
    log = tmp_path / "web.log"
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port, "/readyz"), f"the web server (log {log})", timeout=60)
        assert not (metrics / "counter_0.db").exists()  # an earlier run's counters are not added to this one's
        for _ in range(40):  # a connection each: the workers take them as they come
            assert _answers(port, "/api/v1/books/popular?n=3")
        reader = served.rows[0][0]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"/api/v1/users/{reader}/recommendations?n=5", headers=served.key("readers:read"))
        answer = conn.getresponse()
        assert answer.status == 200 and b'"source":"batch"' in answer.read().replace(b" ", b"")
        conn.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as scrape:
            text = scrape.read().decode()
        counted = re.search(
            r'readnext_http_requests_total\{endpoint="api.popular",method="GET",status="200"\} (\S+)', text
        )
        assert counted and float(counted.group(1)) == 40.0, text[:2000]
    finally:
        server.terminate()
        assert server.wait(timeout=30) is not None
    assert "Spawning worker-2" in log.read_text()


def test_warm_up_loads_the_generation_and_follows_the_topic_before_any_request(served):
    state = create_app(served.config).extensions["readnext"]
    assert state.generation is None  # building the app touches no server
    state.warm_up()
    assert state.generation == served.app.extensions["readnext"].snapshot().model.generation
    wait_for(lambda: state.speed_readers.ready, "the speed-readers follower's first scan", timeout=60)
