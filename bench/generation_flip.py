"""A generation made current while known readers are served: errors, generations named, the latency bump.

    python bench/generation_flip.py --concurrency 4 --seconds 10

Needs two published generations (`make demo` twice, or a demo and a `python -m batch_layer run`).
CURRENT is first moved to the older one and the servers are given time to load it; then wrk
(bench/wrk/known.lua, answers counted per generation they name) loads the web server for three windows
of --seconds each: before, the flip window (the newest generation is made current --flip-after
seconds into it), and after. The speed job and the batch service of the demo follow the flip as
they would any other (the speed job rebases its rows). CURRENT ends where it was. Results:
bench/results/generation-flip.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from serving_load import ROOT, append_results, service_key, web_server, wrk

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.config import load_config
from readnext.views import GenerationViews


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serving = load_config().serving
    parser.add_argument("--workers", type=int, default=serving.workers, help="web server worker processes")
    parser.add_argument("--threads", type=int, default=serving.threads, help="threads per worker")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flip-after", type=float, default=2)
    parser.add_argument("--port", type=int, default=8012)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generation-flip.json")
    args = parser.parse_args()

    config = load_config()
    store = artifacts.open_store(config)
    current = artifacts.current_generation(store)
    known = artifacts.list_generations(store)
    published = known[: known.index(current) + 1] if current in known else []  # not a run under way
    if len(published) < 2:
        print("error: needs two published generations (run the batch layer twice)", file=sys.stderr)
        return 1
    older, newer = published[-2], published[-1]
    conn = hbase_connection(config)
    both = [set(GenerationViews(conn, config, g).reader_ids(limit=50000)) for g in (older, newer)]
    conn.close()
    users = np.array(sorted(both[0] & both[1]), dtype=np.int64)
    refresh = config.serving.refresh_s
    artifacts.set_current(store, older)
    windows = {}
    try:
        with service_key(config, "flip-benchmark") as key, web_server(args.port, args.workers, args.threads):
            wrk(args.port, users, args.concurrency, refresh + 5, key)  # warm-up; every worker on `older`
            windows["before"] = wrk(args.port, users, args.concurrency, args.seconds, key, count_generations=True)
            flip = threading.Timer(args.flip_after, artifacts.set_current, (store, newer))
            flip.start()
            windows["flip"] = wrk(args.port, users, args.concurrency, args.seconds, key, count_generations=True)
            flip.join()
            windows["after"] = wrk(args.port, users, args.concurrency, args.seconds, key, count_generations=True)
    finally:
        artifacts.set_current(store, current)
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "older": older,
        "newer": newer,
        "workers": args.workers,
        "threads": args.threads,
        "concurrency": args.concurrency,
        "refresh_s": refresh,
        "windows": windows,
    }
    print(json.dumps(result, indent=2))
    append_results(args.out, [result])
    return 0


if __name__ == "__main__":
    sys.exit(main())
