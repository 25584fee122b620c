"""Spark MLlib ALS fit time beside the `implicit` library's, same data, rank and iterations.

    pip install -e '.[bench]'
    python bench/als_compare.py --ratings ../shared/data/goodbooks-10k/ratings_5pct_users.csv --label 5pct

Both fit implicit-feedback ALS on the same ratings on this machine's cores (Spark local[*],
implicit's OpenMP threads); only the fit is timed, after the data is loaded and cached.
Results: bench/results/als-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    try:
        import implicit
        from scipy.sparse import csr_matrix
    except ImportError:
        print("error: the comparison needs the bench extras: pip install -e '.[bench]'", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="readnext-als-"))
    from batch_layer.train import fit_als
    from readnext.config import load_config, sandbox_env

    os.environ.update(sandbox_env(work, "bench_als"))
    os.environ["READNEXT_SPARK_DRIVER_MEMORY"] = args.driver_memory
    from readnext.spark import get_spark, stop_spark

    config = load_config()
    model = config.model
    data = np.loadtxt(args.ratings, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    users, user_idx = np.unique(data[:, 0], return_inverse=True)
    books, book_idx = np.unique(data[:, 1], return_inverse=True)
    values = model.alpha * np.abs(data[:, 2] - model.rating_offset).astype(np.float32)
    matrix = csr_matrix((values, (user_idx, book_idx)), shape=(len(users), len(books)))
    implicit_s = []
    for _ in range(args.repeats):
        als = implicit.cpu.als.AlternatingLeastSquares(
            factors=model.rank, iterations=model.iterations, regularization=model.reg, random_state=model.seed
        )
        t0 = time.perf_counter()
        als.fit(matrix, show_progress=False)
        implicit_s.append(time.perf_counter() - t0)

    spark = get_spark(config, app_name="readnext-als-bench")
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.createDataFrame(data.tolist(), "user_id INT, book_id INT, rating INT").cache()
    frame.count()
    spark_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit_als(frame, model).userFactors.count()
        spark_s.append(time.perf_counter() - t0)
    stop_spark(spark)
    result = {
        "label": args.label,
        "ratings": int(len(data)),
        "users": int(len(users)),
        "books": int(len(books)),
        "rank": model.rank,
        "iterations": model.iterations,
        "implicit_version": implicit.__version__,
        "spark_fit_s": [round(s, 2) for s in spark_s],
        "implicit_fit_s": [round(s, 2) for s in implicit_s],
        "spark_over_implicit": round(min(spark_s) / min(implicit_s), 1),
    }
    out = ROOT / "bench" / "results" / f"als-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
