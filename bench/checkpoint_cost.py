"""What a streaming query's checkpoint writes cost per micro-batch, with and without `STREAMING_CONF`.

    python bench/checkpoint_cost.py

A query on Spark's `rate` source (50 rows/s) with a `foreachBatch` that does nothing, triggered
every 100 ms for 20 s, once with Spark's defaults and once with the speed job's settings
(`readnext.spark.STREAMING_CONF`), each in a Spark application of its own (the file system
settings are read when the JVM starts). Reports the mean of each `durationMs` part over its
micro-batches (the rate source moves on once a second, so about 20) and whether the offset log has
`.crc` side files. Results:
bench/results/checkpoint-cost.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving_load import ROOT, append_results

from readnext.config import load_config
from readnext.spark import STREAMING_CONF, get_spark


def measure(streaming: bool) -> dict:
    """One query, in this process's Spark application; returns its mean `durationMs` parts."""
    spark = get_spark(load_config(), "readnext-checkpoint-cost", streaming=streaming)
    checkpoint = Path(tempfile.mkdtemp())
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 50)
        .load()
        .writeStream.foreachBatch(lambda frame, batch_id: None)
        .option("checkpointLocation", str(checkpoint))
        .trigger(processingTime="100 milliseconds")
        .start()
    )
    time.sleep(20)
    parts: dict[str, list[float]] = {}
    for progress in query.recentProgress:
        for part, ms in progress["durationMs"].items():
            parts.setdefault(part, []).append(ms)
    query.stop()
    return {
        "settings": "STREAMING_CONF" if streaming else "Spark's defaults",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "micro_batches": len(parts.get("triggerExecution", [])),
        "mean_ms": {part: round(statistics.mean(values), 1) for part, values in parts.items()},
        "crc_files": any(p.name.endswith(".crc") for p in (checkpoint / "offsets").iterdir()),
        "conf": STREAMING_CONF if streaming else {},
    }


def main() -> int:
    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1] == "streaming")))
        return 0
    rows = []
    for mode in ("default", "streaming"):
        out = subprocess.run([sys.executable, __file__, mode], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    append_results(ROOT / "bench" / "results" / "checkpoint-cost.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
