"""Rating to served recommendation, as a reader sees it: from the producer's send to the API's first speed answer.

    make demo DATA=../shared/data/goodbooks-10k
    python bench/speed_api_latency.py --rates 50 200 400 --seconds 30

Runs against the demo as it runs (its streaming job, batch service and generation), with the web server
started here as `deploy/service web` runs it (rate limits off: the probes come from one address).
At each rate, ratings of the generation's readers are sent to Kafka as background load, and
--probes times a second a reader never seen before rates one book: a probe's latency runs from
just before its send to the first answer of `GET /api/v1/users/<id>/recommendations` whose
`source` is `speed` (its only rating is then in the answer), polled every --poll-ms. Each row
also gives the speed query's micro-batches in the window and the mean time of each of their parts
(Spark's durationMs, sampled about once a second, and `handler`, the foreachBatch function), from
the speed job's metrics, and whether a run of the batch service overlapped the window (a run
takes both cores for about a minute; at 200 ratings/s `[batch] min_new_ratings` = 10,000 starts
one every 50 s). Results: bench/results/speed-api-latency.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from serving_load import PROBE_READERS, ROOT, append_results, current_readers, service_key, web_server

from readnext.clients import kafka_producer
from readnext.config import load_config
from readnext.events import RatingEvent


class Probes:
    """New readers' first speed answers, polled through the API on one keep-alive connection."""

    def __init__(self, port: int, key: str, poll_s: float) -> None:
        self.port, self.key, self.poll_s = port, key, poll_s
        self.pending: dict[int, float] = {}
        self.latencies: list[float] = []
        self.lost = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def sent(self, reader: int, at: float) -> None:
        with self.lock:
            self.pending[reader] = at

    def _source(self, conn: http.client.HTTPConnection, reader: int) -> str:
        path = f"/api/v1/users/{reader}/recommendations?n=10"
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.key}"})
        response = conn.getresponse()
        body = response.read()
        return json.loads(body)["source"] if response.status == 200 else f"http {response.status}"

    def _poll(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not (self.stop.is_set() and not self.pending):
            with self.lock:
                readers = list(self.pending.items())
            for reader, at in readers:
                try:
                    source = self._source(conn, reader)
                except (OSError, http.client.HTTPException):  # the server closed the connection: open another
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    source = "no answer"
                if source == "speed":
                    with self.lock:
                        self.latencies.append(time.monotonic() - at)
                        del self.pending[reader]
                elif time.monotonic() - at > 60:
                    with self.lock:
                        self.lost += 1
                        del self.pending[reader]
            time.sleep(self.poll_s)
        conn.close()

    def finish(self) -> tuple[list[float], int]:
        """(latencies, probes never answered from the speed view within 60 s)."""
        self.stop.set()
        self.thread.join(timeout=90)
        return self.latencies, self.lost + len(self.pending)


def _parts(config) -> dict[str, tuple[float, float]]:
    """(sum of seconds, micro-batches) per part of the speed query's micro-batches, from the speed job's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{config.metrics.speed_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("query") != "speed" or not sample.name.endswith(("_sum", "_count")):
                continue
            if family.name == "readnext_speed_trigger_part_seconds":
                part = sample.labels["part"]
            elif family.name == "readnext_speed_batch_duration_seconds":
                part = "handler"
            else:
                continue
            out.setdefault(part, [0.0, 0.0])[sample.name.endswith("_count")] += sample.value
    return {part: (v[0], v[1]) for part, v in out.items()}


def _batch_runs(config) -> tuple[float, bool]:
    """(batch runs the batch service has finished, whether one runs now), to tell windows that shared the cores."""
    with urllib.request.urlopen(f"http://127.0.0.1:{config.metrics.batch_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    finished = sum(s.value for s in samples if s.name == "readnext_batch_runs_total")
    return finished, any(s.value for s in samples if s.name == "readnext_batch_run_in_progress")


def _mean_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per micro-batch of each part between two readings of `_parts`."""
    means = {}
    for part, (total, count) in after.items():
        was_total, was_count = before.get(part, (0.0, 0.0))
        if count > was_count:
            means[part] = round((total - was_total) / (count - was_count) * 1000, 1)
    return means


def _run(
    config,
    port: int,
    key: str,
    users: np.ndarray,
    books: np.ndarray,
    rate: float,
    seconds: float,
    args: argparse.Namespace,
    new_readers: Iterator[int],
) -> dict:
    rng = np.random.default_rng(int(rate * 1000 + seconds))
    # Probes go out at once; the background load in batches, as a service posting 200 ratings a
    # second would send them (one produce request per rating took a third of a core here).
    producer, background = kafka_producer(config, linger_ms=0), kafka_producer(config, linger_ms=50)
    probes = Probes(port, key, args.poll_ms / 1000)
    topic = config.kafka.ratings_topic
    sent = probed = 0
    every = max(1, round(rate / args.probes))
    parts_before, runs_before = _parts(config), _batch_runs(config)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if sent % every == 0:
            reader = next(new_readers)
            event = RatingEvent(reader, int(rng.choice(books[:200])), 5, int(time.time() * 1000))
            probes.sent(reader, time.monotonic())
            probed += 1
            sender = producer
        else:
            reader, book, stars = int(rng.choice(users)), int(rng.choice(books)), int(rng.integers(1, 6))
            event = RatingEvent(reader, book, stars, int(time.time() * 1000))
            sender = background
        sender.send(topic, key=str(event.user_id).encode(), value=event.to_json())
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    producer.flush()
    background.flush()
    elapsed = time.monotonic() - start
    latencies, lost = probes.finish()
    producer.close()
    background.close()
    parts, runs = _parts(config), _batch_runs(config)
    ms = np.array(latencies) * 1000
    return {
        "target_rate": rate,
        "achieved_rate": round(sent / elapsed, 1),
        "probes": probed,
        "answered": len(ms),
        "not_answered_in_60s": lost,
        "poll_ms": args.poll_ms,
        "p50_s": round(float(np.percentile(ms, 50)) / 1000, 3) if len(ms) else None,
        "p99_s": round(float(np.percentile(ms, 99)) / 1000, 3) if len(ms) else None,
        "max_s": round(float(ms.max()) / 1000, 3) if len(ms) else None,
        "micro_batches": int(parts.get("handler", (0, 0))[1] - parts_before.get("handler", (0, 0))[1]),
        "mean_ms_per_micro_batch": _mean_ms(parts_before, parts),
        "batch_run_overlapped": bool(runs[0] > runs_before[0] or runs[1] or runs_before[1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 400])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=10, help="seconds at each rate before measuring")
    parser.add_argument("--probes", type=float, default=5, help="new readers per second whose latency is measured")
    parser.add_argument("--poll-ms", type=float, default=20)
    serving = load_config().serving
    parser.add_argument("--workers", type=int, default=serving.workers, help="web server worker processes")
    parser.add_argument("--threads", type=int, default=serving.threads, help="threads per worker")
    parser.add_argument("--port", type=int, default=8013)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed-api-latency.json")
    args = parser.parse_args()

    config = load_config()
    model, users = current_readers(config)
    books = np.asarray(model.book_ids)
    # Readers never seen before: a block of 10,000 ids of its own per run (one run a second at most).
    block = PROBE_READERS + int(time.time()) % 100_000 * 10_000
    new_readers = iter(range(block, block + 10_000))
    results = []
    with service_key(config, "speed-api-benchmark") as key, web_server(args.port, args.workers, args.threads):
        for rate in args.rates:
            _run(config, args.port, key, users, books, rate, args.warmup, args, new_readers)
            row = _run(config, args.port, key, users, books, rate, args.seconds, args, new_readers)
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            row.update(measured_at=at, workers=args.workers, threads=args.threads)
            print(json.dumps(row), flush=True)
            results.append(row)
    append_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
