"""Spark's real-time mode (`trigger(realTime=...)`, Spark 4.1+) with the speed layer's kinds of sink, on pyspark 4.2.

    deploy/stack start
    READNEXT_SPARK_MASTER='local[6]' python bench/realtime_mode.py

A minimal reproduction for issue 15: can the speed layer's Python fold-in run in real-time mode,
and how soon does it see a rating? For each sink it starts a real-time query on the ratings
topic (update mode, the shortest batch Spark allows: 5 s), sends five ratings half a second
apart, and reports whether the query started and, per rating, the seconds from its send to the
Python function's call. Real-time mode runs one long task per Kafka partition for the whole
batch, so the master needs as many task slots as the topic has partitions (4): with `local[*]`
on 2 cores two partitions never run. Results: bench/results/realtime-mode.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from serving_load import ROOT, append_results

from readnext.clients import kafka_producer
from readnext.config import load_config
from readnext.spark import get_spark

CALLS = Path(tempfile.gettempdir()) / "readnext-realtime-calls.jsonl"


def _row(row) -> None:
    """The foreach sink's Python function: notes when it saw each rating."""
    with CALLS.open("a") as f:
        f.write(json.dumps({"seen": time.time(), "value": json.loads(row.value)}) + "\n")


def _batch(frame, batch_id: int) -> None:
    for row in frame.collect():
        _row(row)


def main() -> int:
    config = load_config()
    spark = get_spark(config, "readnext-realtime-mode")
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", config.kafka.ratings_topic)
        .option("startingOffsets", "latest")
        .load()
        .selectExpr("key", "value")
    )
    producer = kafka_producer(config, linger_ms=0)
    results = []
    for name, sink in (("foreach (Python function per row)", "foreach"), ("foreachBatch (Python function)", "batch")):
        CALLS.unlink(missing_ok=True)
        row = {"sink": name, "master": spark.sparkContext.master, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        writer = (
            source.writeStream.outputMode("update")
            .option("checkpointLocation", tempfile.mkdtemp())
            .trigger(realTime="5 seconds")
        )
        try:
            query = (writer.foreach(_row) if sink == "foreach" else writer.foreachBatch(_batch)).start()
        except Exception as e:  # noqa: BLE001 - the refusal is the result
            row["error"] = str(e).splitlines()[0]
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        time.sleep(6)  # the first real-time batch is running
        sent = {}
        for k in range(5):
            reader = 990_990_000 + k
            event = {"user_id": reader, "book_id": 2, "rating": 4, "ts_ms": int(time.time() * 1000)}
            sent[reader] = time.time()
            producer.send(config.kafka.ratings_topic, key=str(reader).encode(), value=json.dumps(event).encode())
            producer.flush()
            time.sleep(0.5)
        time.sleep(8)
        calls = [json.loads(line) for line in CALLS.read_text().splitlines()] if CALLS.exists() else []
        row["seconds_send_to_call"] = [
            round(c["seen"] - sent[c["value"]["user_id"]], 3) for c in calls if c["value"].get("user_id") in sent
        ]
        row["error"] = str(query.exception()) if query.exception() else None
        query.stop()
        results.append(row)
        print(json.dumps(row), flush=True)
    producer.close()
    append_results(ROOT / "bench" / "results" / "realtime-mode.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
