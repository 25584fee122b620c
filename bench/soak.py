"""Soak: the whole running demo for --minutes under ratings and reads; memory, latency and errors per minute.

    make demo DATA=../shared/data/goodbooks-10k
    python bench/soak.py --minutes 30 --rating-rate 100 --read-rate 270

Ratings go through the API as a service would post them (POST /api/v1/ratings, --rating-rate per
second from 4 threads, for new readers of an id block of this run's own, books of the current
generation); known readers' recommendations come from Debian's wrk (paced by bench/wrk/known.lua's
DELAY_MS, adjusted each minute towards --read-rate). The batch service recomputes by itself as
the ratings arrive (`[batch] min_new_ratings`). Every minute: the resident memory of each process
tree of the stack and the layers (from their pid files), the read latency of that minute (wrk's
p50/p99), ratings acknowledged (202) and refused, errors, the current generation. Run it with
the demo's environment: the batch settings it records are those it loads. At the end: this run's ratings in the
master dataset against those acknowledged. Results: bench/results/soak.json; plot: --plot.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from serving_load import ROOT, append_results, current_readers, service_key, wrk

from readnext import artifacts
from readnext.config import load_config
from readnext.processes import pid_alive, tree_rss_mb

PROCESSES = ("metastore", "kafka", "hbase", "thrift", "memcached", "prometheus", "speed", "batch", "web")
COUNT_MASTER = """
import sys
from readnext.config import load_config
from readnext.spark import get_spark, stop_spark
spark = get_spark(load_config(), app_name="soak-count")
low, high = int(sys.argv[1]), int(sys.argv[2])
print("COUNT=%d" % spark.table("ratings").where(f"user_id >= {low} AND user_id < {high}").count())
stop_spark(spark)
"""


def memory(state_dir: Path) -> dict[str, float]:
    """MB per process tree of the stack and the layers that run (their pid files under <state_dir>/run)."""
    found = {}
    for name in PROCESSES:
        try:
            pid = int((state_dir / "run" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            found[name] = round(tree_rss_mb(pid), 1)
    return found


class Raters:
    """Threads posting ratings at a steady total rate; answers counted per status, per minute."""

    def __init__(self, port: int, key: str, first_reader: int, books: np.ndarray, rate: float) -> None:
        self.port, self.key, self.books, self.rate = port, key, books, rate
        self.next_reader, self.first_reader = first_reader, first_reader
        self.statuses: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._post, args=(k,), daemon=True) for k in range(4)]

    def _post(self, k: int) -> None:
        rng = np.random.default_rng(k)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        every, due = len(self.threads) / self.rate, time.monotonic()
        while not self.stop.is_set():
            with self.lock:
                reader = self.next_reader + int(rng.integers(0, 50))  # a few ratings per new reader
                self.next_reader += 1 if rng.random() < 0.1 else 0
            body = {"user_id": reader, "book_id": int(rng.choice(self.books)), "rating": int(rng.integers(1, 6))}
            try:
                conn.request("POST", "/api/v1/ratings", json.dumps(body), headers)
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0  # no answer at all
            with self.lock:
                self.statuses[status] += 1
            due += every
            time.sleep(max(0.0, due - time.monotonic()))

    def readers(self) -> tuple[int, int]:
        """The id range this run's ratings can name."""
        return self.first_reader, self.next_reader + 50

    def take(self) -> Counter[int]:
        with self.lock:
            taken, self.statuses = self.statuses, Counter()
        return taken


def master_count(low: int, high: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_MASTER, str(low), str(high)], cwd=ROOT, capture_output=True, text=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("COUNT=")), None)
    if line is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(line[6:])


def plot(minutes: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [m["minute"] for m in minutes]
    fig, (mem, lat, flow) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    for name in PROCESSES:
        if any(name in m["rss_mb"] for m in minutes):
            mem.plot(t, [m["rss_mb"].get(name) for m in minutes], label=name)
    mem.set_ylabel("resident memory (MB)")
    mem.legend(ncol=3, fontsize=8)
    lat.plot(t, [m["read_p50_ms"] for m in minutes], label="p50")
    lat.plot(t, [m["read_p99_ms"] for m in minutes], label="p99")
    lat.set_ylabel("known-reader latency (ms)")
    lat.set_yscale("log")
    lat.legend()
    flow.plot(t, [m["ratings_acknowledged"] / 60 for m in minutes], label="ratings acknowledged / s")
    flow.plot(t, [m["reads"] / 60 for m in minutes], label="reads / s")
    flow.plot(t, [m["errors"] for m in minutes], label="errors (count)")
    flow.set_ylabel("per second")
    flow.set_xlabel("minute")
    flow.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rating-rate", type=float, default=100, help="ratings posted per second")
    parser.add_argument("--read-rate", type=float, default=270, help="known-reader requests per second (wrk)")
    parser.add_argument("--concurrency", type=int, default=4, help="wrk's connections")
    parser.add_argument("--port", type=int, default=8000, help="the demo's web server")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "reliability" / "soak.png")
    args = parser.parse_args()
    config = load_config()
    store = artifacts.open_store(config)
    model, users = current_readers(config)
    first_reader = 920_000_000 + (int(time.time()) % 10_000) * 10_000
    minutes: list[dict] = []
    delay_ms = max(0.0, args.concurrency * 1000 / args.read_rate - 5)
    with (
        service_key(config, f"soak-{first_reader}", ("readers:read", "ratings:write")) as key,
        service_key(config, f"soak-read-{first_reader}") as read_key,
    ):
        raters = Raters(args.port, key, first_reader, model.book_ids, args.rating_rate)
        for thread in raters.threads:
            thread.start()
        for minute in range(1, args.minutes + 1):
            reads = wrk(args.port, users, args.concurrency, 60, read_key, delay_ms=delay_ms)
            posted = raters.take()
            row = {
                "minute": minute,
                "rss_mb": memory(config.stack.state_dir),
                "reads": reads["requests"],
                "read_p50_ms": reads["p50_ms"],
                "read_p99_ms": reads["p99_ms"],
                "read_max_ms": reads["max_ms"],
                "ratings_acknowledged": posted[202],
                "ratings_refused": sum(n for s, n in posted.items() if s != 202),
                "errors": reads["errors"] + sum(n for s, n in posted.items() if s != 202),
                "delay_ms": round(delay_ms, 1),
                "generation": artifacts.current_generation(store),
            }
            minutes.append(row)
            print(json.dumps(row), flush=True)
            achieved = reads["requests"] / 60
            if achieved > 0:  # pace the next minute towards the asked rate
                delay_ms = max(0.0, delay_ms + args.concurrency * 1000 * (1 / args.read_rate - 1 / achieved))
        raters.stop.set()
        for thread in raters.threads:
            thread.join(timeout=60)
        tail = raters.take()
    acknowledged = sum(m["ratings_acknowledged"] for m in minutes) + tail[202]
    low, high = raters.readers()
    deadline = time.monotonic() + 300 + 4 * config.speed.master_trigger_s
    stored = master_count(low, high)
    while stored < acknowledged and time.monotonic() < deadline:
        time.sleep(config.speed.master_trigger_s)
        stored = master_count(low, high)
    settled = [m for m in minutes if m["minute"] > min(5, len(minutes) // 3)]
    growth = (
        {
            name: round(settled[-1]["rss_mb"].get(name, 0) - settled[0]["rss_mb"].get(name, 0), 1)
            for name in settled[0]["rss_mb"]
        }
        if settled
        else {}
    )
    result = {
        "scenario": "soak",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes": args.minutes,
        "rating_rate": args.rating_rate,
        "read_rate": args.read_rate,
        "batch": {
            "min_new_ratings": config.batch.min_new_ratings,
            "interval_s": config.batch.interval_s,
            "min_age_s": config.batch.min_age_s,
        },
        "generations_published": len({m["generation"] for m in minutes}) - 1,
        "ratings_acknowledged": acknowledged,
        "ratings_in_master_dataset": stored,
        "errors": sum(m["errors"] for m in minutes) + sum(n for s, n in tail.items() if s != 202),
        "rss_growth_after_warm_up_mb": growth,
        "per_minute": minutes,
    }
    append_results(args.out, [result])
    plot(minutes, args.plot)
    print(json.dumps({k: v for k, v in result.items() if k != "per_minute"}, indent=2))
    return 0 if stored == acknowledged and result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
