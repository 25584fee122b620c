"""Speed-layer freshness: produce → speed view visible in HBase, p50/p99, at sustained rates.

    python bench/speed_latency.py --ratings ../shared/data/goodbooks-10k/ratings_5pct_users.csv \
        --books ../shared/data/goodbooks-10k/books.csv --rates 200 400 800 --seconds 60

Builds a generation from the ratings (evaluation off) in a state of its own, starts
`python -m speed_layer stream`, then for each rate posts ratings of the dataset's readers at that
rate, first for --warmup seconds unmeasured (the job's first micro-batches pay for JIT
compilation and cold caches), then for --seconds measured, and watches the speed view: an event
is visible when a speed row holding it is in HBase, and its latency is that row's write time
minus the event's send time. Results: bench/results/speed-latency.json. Needs the running
local stack.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from readnext.clients import hbase_connection, kafka_producer  # noqa: E402
from readnext.config import load_config, sandbox_env  # noqa: E402
from readnext.events import RatingEvent  # noqa: E402
from readnext.views import SpeedView  # noqa: E402


def _measure(config, users: np.ndarray, books: np.ndarray, rate: float, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    producer = kafka_producer(config, linger_ms=0)
    pending: dict[int, dict[int, int]] = {}  # user -> {ts_ms: send_ms}
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def watch() -> None:
        conn = hbase_connection(config)
        speed = SpeedView(conn, config)
        while not (done.is_set() and not pending):
            with lock:
                users = list(pending)
            if not users:
                time.sleep(0.01)
                continue
            for user, row in speed.freshness(users).items():
                seen = {int(e[4]) for e in row.events}
                with lock:
                    waiting = pending.get(user, {})
                    for ts in [t for t in waiting if t in seen]:
                        latencies.append((row.updated_ms - waiting.pop(ts)) / 1000)
                    if not waiting:
                        pending.pop(user, None)
            time.sleep(0.02)
        conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent, start, last_ts = 0, time.monotonic(), 0
    while time.monotonic() - start < seconds:
        user, book = int(rng.choice(users)), int(rng.choice(books))
        ts = max(int(time.time() * 1000), last_ts + 1)  # unique per event: it names the event
        last_ts = ts
        event = RatingEvent(user, book, int(rng.integers(1, 6)), ts)
        with lock:
            pending.setdefault(user, {})[ts] = ts
        producer.send(config.kafka.ratings_topic, key=str(user).encode(), value=event.to_json())
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    producer.flush()
    produced_s = time.monotonic() - start
    done.set()
    watcher.join(timeout=120)
    lat = np.array(latencies)
    return {
        "target_rate": rate,
        "achieved_rate": round(sent / produced_s, 1),
        "events": sent,
        "visible": int(len(lat)),
        "p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "p99_s": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "max_s": round(float(lat.max()), 3) if len(lat) else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("--books", type=Path, required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 400, 800])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=20, help="seconds at each rate before measuring")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="readnext-speed-bench-"))
    env = dict(os.environ, **sandbox_env(work, f"bench_speed_{int(time.time())}"))
    env["READNEXT_BATCH_EVALUATE"] = "false"
    os.environ.update(env)
    config = load_config()
    subprocess.run(
        [sys.executable, "-m", "batch_layer", "run", "--ratings", str(args.ratings), "--books", str(args.books)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    data = np.loadtxt(args.ratings, delimiter=",", skiprows=1, dtype=np.int64, usecols=(0, 1), ndmin=2)
    users, books = np.unique(data[:, 0]), np.unique(data[:, 1])
    log = (work / "stream.log").open("wb")
    stream = subprocess.Popen(
        [sys.executable, "-m", "speed_layer", "stream"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    results = []
    try:
        deadline = time.monotonic() + 300
        while b"readnext-speed" not in (work / "stream.log").read_bytes():  # the job's start-up
            if stream.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the streaming job did not start; see {work / 'stream.log'}")
            time.sleep(1)
        for i, rate in enumerate(args.rates):
            _measure(config, users, books, rate, args.warmup, seed=100 + i)  # steady state first
            result = _measure(config, users, books, rate, args.seconds, seed=i)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=60)
        log.close()
    out = ROOT / "bench" / "results" / "speed-latency.json"
    out.write_text(json.dumps({"trigger_ms": config.speed.trigger_ms, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
