"""Serving-layer load: throughput and p50/p99 under fixed concurrency, from a process of its own.

    python bench/serving_load.py --generator wrk --concurrency 4 8 --seconds 15

Starts the web server (python -m serving_layer serve) on --port (the current generation of the
running local stack: run `make demo` or `python -m batch_layer run` first), then, from this
process, keeps --concurrency keep-alive connections busy for --seconds on each scenario:

- known: GET /api/v1/users/<id>/recommendations for readers of the generation (speed/batch merge),
  as a trusted back end with a service key of scope readers:read (made for the run, revoked after);
- anonymous: POST /api/v1/recommendations with 5-20 ratings of random books (exact fold-in).

With `--generator wrk` the load comes from Debian's wrk instead (one thread of C, so the load
generator does not take the server's cores): bench/wrk/known.lua for known readers, then
bench/wrk/anonymous.lua for anonymous ones (10-20 ratings each); with `--delay-ms` each connection
pauses between requests, a paced load at a chosen rate instead of a flood that fills both cores.
Each measured run follows --warmup seconds of the same load, in which each worker fills its cache
of the generation's rows (`[serving] batch_rows_cached`).

Rate limits are off for the run (READNEXT_LIMITS_ENABLED=false): the load comes from one address.
With `--running` the server already on --port is loaded instead (the demo's, on 8000, as a reader
finds it, rate limits on), with known readers only.
What a token check adds to a request, one HBase get of the token's row, is timed on its own
(`token_check`). Every non-200 answer or failed request counts as an error. Results:
bench/results/serving-load.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from readnext import artifacts  # noqa: E402
from readnext.accounts import Tokens  # noqa: E402
from readnext.clients import hbase_connection  # noqa: E402
from readnext.config import load_config  # noqa: E402
from readnext.model import ModelHolder, ServedModel  # noqa: E402
from readnext.views import GenerationViews  # noqa: E402

# Reader ids from here on are the speed benchmark's made-up readers (bench/speed_api_latency.py).
PROBE_READERS = 900_000_000


def _requests(kind: str, users: np.ndarray, books: np.ndarray, seed: int):
    """An endless stream of (method, path, body) for one connection."""
    rng = np.random.default_rng(seed)
    while True:
        if kind == "known":
            yield "GET", f"/api/v1/users/{int(rng.choice(users))}/recommendations?n=10", None
        else:
            chosen = rng.choice(books, size=int(rng.integers(5, 21)), replace=False)
            ratings = [{"book_id": int(b), "rating": int(rng.integers(1, 6))} for b in chosen]
            yield "POST", "/api/v1/recommendations", json.dumps({"ratings": ratings, "n": 10})


def _load(
    port: int, kind: str, users: np.ndarray, books: np.ndarray, concurrency: int, seconds: float, key: str
) -> dict:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = time.monotonic()
    deadline = start + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json", "Connection": "keep-alive", "Authorization": f"Bearer {key}"}
        for method, path, body in _requests(kind, users, books, seed=i):
            if time.monotonic() >= deadline:
                break
            began = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            latencies[i].append(time.perf_counter() - began)
            errors[i] += not ok
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    all_ms = np.concatenate([np.array(x) for x in latencies]) * 1000
    return {
        "scenario": kind,
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "requests": int(len(all_ms)),
        "errors": int(sum(errors)),
        "requests_per_s": round(len(all_ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(all_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(all_ms, 99)), 2),
        "max_ms": round(float(all_ms.max()), 2),
    }


def wrk(
    port: int,
    users: np.ndarray,
    concurrency: int,
    seconds: float,
    key: str,
    count_generations: bool = False,
    delay_ms: float | None = None,
    books: np.ndarray | None = None,
) -> dict:
    """Known readers' requests from Debian's wrk (bench/wrk/known.lua): one thread of C, not the server's cores.

    With `count_generations`, the answers per generation they name are counted too (`generations`);
    with `delay_ms`, each connection pauses that long between requests (a paced load). With
    `books`, anonymous readers' requests instead, 10 to 20 ratings of these books each
    (bench/wrk/anonymous.lua).
    """
    readers = Path(tempfile.mkstemp(prefix="readnext-readers-")[1])
    readers.write_text("\n".join(str(int(u)) for u in users) + "\n")
    scenario = "known" if books is None else "anonymous"
    book_file = readers.with_name(readers.name + "-books")
    if books is not None:
        book_file.write_text("\n".join(str(int(b)) for b in books) + "\n")
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:.0f}s",
        "-s",
        str(ROOT / "bench" / "wrk" / f"{scenario}.lua"),
        f"http://127.0.0.1:{port}",
    ]
    env = {
        **os.environ,
        "READERS_FILE": str(readers),
        "BOOKS_FILE": str(book_file),
        "WRK_SCRIPTS": str(ROOT / "bench" / "wrk"),
        "TOKEN": key,
    }
    if count_generations:
        env["COUNT_GENERATIONS"] = "1"
    if delay_ms is not None:
        env["DELAY_MS"] = f"{delay_ms:.0f}"
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(min(3.0, seconds / 2))
    split = _connections_per_worker(port)
    out = run.communicate(timeout=seconds + 60)[0]
    readers.unlink()
    book_file.unlink(missing_ok=True)
    found = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    return {
        "scenario": scenario,
        "generator": "wrk",
        "concurrency": concurrency,
        "seconds": round(found["seconds"], 1),
        "requests": found["requests"],
        "errors": found["non2xx"] + found["errors"],
        "requests_per_s": round(found["requests"] / found["seconds"], 1),
        "p50_ms": round(found["p50_ms"], 2),
        "p99_ms": round(found["p99_ms"], 2),
        "max_ms": round(found["max_ms"], 2),
        "connections_per_worker": split,
        **({"generations": found["generations"]} if count_generations else {}),
    }


def _token_checks(config, key: str, count: int = 2000) -> dict:
    """The latency of `Tokens.lookup`, the one HBase get a token check adds to a request."""
    conn = hbase_connection(config)
    tokens = Tokens(conn, config)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        assert tokens.lookup(key) is not None
        times.append(time.perf_counter() - began)
    conn.close()
    ms = np.array(times[count // 10 :]) * 1000
    return {
        "scenario": "token_check",
        "lookups": len(ms),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def append_results(path: Path, rows: list[dict]) -> None:
    """Add this run's rows to a benchmark's results file (a JSON list kept across runs)."""
    previous = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(previous + rows, indent=2) + "\n")


def _connections_per_worker(port: int) -> list[int]:
    """How the load's keep-alive connections fell on the server's processes, busiest first (from `ss`).

    The kernel hands each new connection to whichever worker accepts first, and wrk keeps it for
    the run: with 2 workers, 4 connections fell 2-2, 3-1 or 4-0 from run to run.
    """
    listing = ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"]
    owners = re.findall(r"pid=(\d+)", subprocess.run(listing, capture_output=True, text=True).stdout)
    return sorted(Counter(owners).values(), reverse=True)


def current_readers(config) -> tuple[ServedModel, np.ndarray]:
    """The current generation's model and (up to 50,000 of) its readers; exits when none is published.

    Readers the speed benchmark made up (`PROBE_READERS` on) are left out: each of its windows
    adds 150 readers of one rating to the next generation, and after a few dozen windows they
    outnumbered the slice's 3,373 readers, so a load of "known readers" was mostly theirs.
    """
    holder = ModelHolder(artifacts.open_store(config))
    if not holder.refresh():
        sys.exit("error: no current generation; run `make demo` or `python -m batch_layer run` first")
    conn = hbase_connection(config)
    users = GenerationViews(conn, config, holder.model.generation).reader_ids(limit=50000)
    conn.close()
    return holder.model, np.array([u for u in users if u < PROBE_READERS], dtype=np.int64)


@contextmanager
def web_server(port: int, workers: int, threads: int) -> Iterator[None]:
    """The serving layer's web server as deploy/service web runs it (python -m serving_layer serve), rate limits off."""
    command = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-m",
        "serving_layer",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    log = (ROOT / ".state" / "logs" / "bench-serving.log").open("w")
    metrics = Path(tempfile.mkdtemp(prefix="readnext-bench-metrics-"))
    env = {**os.environ, "READNEXT_LIMITS_ENABLED": "false", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the server did not become ready; see .state/logs/bench-serving.log")
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def service_key(config, name: str, scopes: tuple[str, ...] = ("readers:read",)) -> Iterator[str]:
    """A service key with `scopes` for the run, revoked after."""
    conn = hbase_connection(config)
    key = Tokens(conn, config).issue_key(name, set(scopes))
    conn.close()
    try:
        yield key
    finally:
        conn = hbase_connection(config)
        Tokens(conn, config).revoke_key(name)
        conn.close()


def _server(args: argparse.Namespace) -> dict:
    if args.running:
        return {"server": f"already running on port {args.port}"}
    return {"server": "granian", "workers": args.workers, "threads": args.threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serving = load_config().serving
    parser.add_argument("--workers", type=int, default=serving.workers, help="web server worker processes")
    parser.add_argument("--threads", type=int, default=serving.threads, help="threads per worker")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8], help="open connections")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--warmup",
        type=float,
        default=10,
        help="seconds of the same load before each measured run: each worker fills its cache of batch rows",
    )
    parser.add_argument(
        "--generator",
        choices=("python", "wrk"),
        default="python",
        help="load from this process's threads (known and anonymous readers) or from wrk (known readers)",
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        help="with --generator wrk: each connection pauses this long between requests (a paced load, not a flood)",
    )
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument(
        "--running",
        action="store_true",
        help="load the web server already on --port (the demo's: 8000) instead of starting one; known readers only, "
        "since its rate limits answer a flood of anonymous fold-ins from one address with 429",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving-load.json")
    parser.add_argument("--setting", default="", help="what else ran on the machine, kept with each row")
    args = parser.parse_args()

    config = load_config()
    model, users = current_readers(config)
    books = np.asarray(model.book_ids)
    results = []
    server = nullcontext() if args.running else web_server(args.port, args.workers, args.threads)
    with service_key(config, "serving-benchmark") as key, server:
        results.append(_token_checks(config, key))
        print(json.dumps(results[0]), flush=True)
        for concurrency in args.concurrency:
            if args.generator == "wrk":
                for rated in (None,) if args.running else (None, books):  # known readers, then anonymous ones
                    wrk(args.port, users, concurrency, args.warmup, key, books=rated, delay_ms=args.delay_ms)
                    row = wrk(args.port, users, concurrency, args.seconds, key, books=rated, delay_ms=args.delay_ms)
                    row.update(_server(args), setting=args.setting)
                    if args.delay_ms is not None:
                        row["delay_ms"] = args.delay_ms
                    print(json.dumps(row), flush=True)
                    results.append(row)
                continue
            for kind in ("known",) if args.running else ("known", "anonymous"):
                _load(args.port, kind, users, books, concurrency, args.warmup, key)  # caches, connections, pools
                row = _load(args.port, kind, users, books, concurrency, args.seconds, key)
                row.update(_server(args), setting=args.setting)
                print(json.dumps(row), flush=True)
                results.append(row)
    append_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
