"""What following the ratings topic costs a web worker, and what kafka-python's CRC check costs a consumer.

    make demo DATA=../shared/data/goodbooks-10k
    python bench/kafka_client_cost.py --rate 200 --seconds 25

1. A web worker's speed-readers follower (serving_layer/speed_readers.py) at each fetch setting
   (fetch.max.wait.ms, fetch.min.bytes; 500 ms and 1 byte are kafka-python's defaults): the
   process's CPU while a producer of its own process sends --rate ratings a second (and once
   with no ratings at all: the idle cost).
2. A consumer reading the topic's last --records records, with kafka-python's record CRCs checked
   in C (the `crc32c` package) and in Python (kafka-python's fallback): CPU per record.

Runs against the demo's Kafka and HBase; the follower's seed scan reads the speed view.
Results: bench/results/kafka-client-cost.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from serving_load import ROOT, append_results

from readnext.clients import kafka_consumer, kafka_producer, topic_partitions
from readnext.config import load_config
from readnext.events import RatingEvent


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def produce(rate: float, seconds: float) -> None:
    """Send `rate` ratings a second of readers 1-3,000 for `seconds` (run in a process of its own)."""
    config = load_config()
    producer = kafka_producer(config)  # as the API posts ratings: each sent within 5 ms
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        user = sent % 3000 + 1
        event = RatingEvent(user, sent % 10000 + 1, sent % 5 + 1, int(time.time() * 1000))
        producer.send(config.kafka.ratings_topic, key=str(user).encode(), value=event.to_json())
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    producer.flush()


def follower_cost(wait_ms: int, min_bytes: int, rate: float, seconds: float) -> dict:
    """CPU share of this process while a follower with these fetch settings follows the topic."""
    import dataclasses

    from serving_layer.state import ServingState

    config = load_config()
    serving = dataclasses.replace(
        config.serving, speed_readers_fetch_wait_ms=wait_ms, speed_readers_fetch_min_bytes=min_bytes
    )
    state = ServingState(dataclasses.replace(config, serving=serving))
    state.speed_readers.start()
    sender = None
    if rate:
        command = [sys.executable, __file__, "--produce", str(rate), str(seconds + 10)]
        sender = subprocess.Popen(command)
    time.sleep(5)
    cpu, start = _cpu_s(), time.monotonic()
    time.sleep(seconds)
    share = (_cpu_s() - cpu) / (time.monotonic() - start)
    if sender is not None:
        sender.wait()
    return {"fetch_max_wait_ms": wait_ms, "fetch_min_bytes": min_bytes, "rate": rate, "cpu_share": round(share, 3)}


def consumer_cost(records: int, in_c: bool) -> dict:
    """CPU per record of a consumer reading the topic's last `records` records."""
    from kafka.record import util

    util.calc_crc32c.__defaults__ = (util.crc32c_c if in_c and util.crc32c_c else util.crc32c_py,)
    config = load_config()
    topic = config.kafka.ratings_topic
    consumer = kafka_consumer(config, enable_auto_commit=False, fetch_max_wait_ms=10)
    partitions = topic_partitions(consumer, topic)
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, max(0, ends[tp] - records // len(partitions)))
    cpu, read = _cpu_s(), 0
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
    consumer.close()
    return {"crc": "C" if in_c else "Python", "records": read, "us_per_record": round((_cpu_s() - cpu) / read * 1e6, 1)}


def main() -> int:
    if sys.argv[1:2] == ["--produce"]:
        produce(float(sys.argv[2]), float(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kafka-client-cost.json")
    args = parser.parse_args()
    if args.one:  # one follower in a fresh process, so that no earlier one runs beside it
        print(json.dumps(follower_cost(*json.loads(args.one), args.seconds)), flush=True)
        return 0
    serving = load_config().serving
    fetches = [(500, 1), (50, 1 << 20), (100, 1 << 20), (200, 1 << 20)]
    idle = [(500, 1), (serving.speed_readers_fetch_wait_ms, serving.speed_readers_fetch_min_bytes)]
    rows = []
    for wait_ms, min_bytes, rate in [(*f, args.rate) for f in fetches] + [(*f, 0) for f in idle]:
        command = [
            sys.executable,
            __file__,
            "--one",
            json.dumps([wait_ms, min_bytes, rate]),
            "--seconds",
            str(args.seconds),
        ]
        found = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        rows.append({"measure": "follower", **json.loads(found)})
        print(json.dumps(rows[-1]), flush=True)
    for in_c in (True, False):
        rows.append({"measure": "consumer", **consumer_cost(args.records, in_c)})
        print(json.dumps(rows[-1]), flush=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_results(args.out, [{**row, "measured_at": at} for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
