"""Benchmark `python -m batch_layer run`: wall time per stage and peak memory of the whole process tree.

    python bench/batch_run.py --label 5pct --ratings ../shared/data/goodbooks-10k/ratings_5pct_users.csv \
        --books ../shared/data/goodbooks-10k/books.csv

Runs against the running local stack with a metastore, warehouse, artifact store and HBase
table prefix of its own, so it never touches the demo's data. Results: bench/results/batch-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from readnext.config import sandbox_env  # noqa: E402

STAGE_END = re.compile(r"stage (.+): end in ([0-9.]+) s")


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (the Python driver, the JVM, Python workers)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(proc.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("--books", type=Path, required=True)
    parser.add_argument("--driver-memory", default="2g")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"readnext-bench-{args.label}-"))
    env = dict(os.environ, **sandbox_env(work, f"bench_{args.label}"))
    env["READNEXT_SPARK_DRIVER_MEMORY"] = args.driver_memory
    cmd = [sys.executable, "-m", "batch_layer", "run", "--ratings", str(args.ratings), "--books", str(args.books)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages: dict[str, float] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if " batch_layer" in line or "generation" in line:
            print(line.rstrip()[:300], flush=True)
        match = STAGE_END.search(line)
        if match:
            stages[match.group(1)] = float(match.group(2))
    rc = proc.wait()
    sampler.join()
    result = {
        "label": args.label,
        "ratings_file": str(args.ratings),
        "exit_code": rc,
        "wall_s": round(time.monotonic() - started, 1),
        "peak_rss_gib": round(peak[0] / 2**30, 2),
        "driver_memory": args.driver_memory,
        "stages_s": stages,
    }
    out = ROOT / "bench" / "results" / f"batch-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
