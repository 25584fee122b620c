"""A micro-batch's Kafka records, read by a consumer over the offsets Spark planned for it.

Spark's Kafka source plans each micro-batch: it picks the end offsets, writes them ahead to the
checkpoint's offset log, and replays the same range after a crash. Reading the records through a
Spark job (four tasks, one per partition, then `collect()`) took 58 ms p50 for 50 records on
two cores, where a consumer reading the same range took 3 ms (docs/benchmarks.md). So the speed
query reads its range, from the end offsets of the micro-batch before it to its own, with a
kafka-python consumer; Spark still owns the offsets, the checkpoint and the recovery.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from readnext.clients import kafka_consumer
from readnext.config import Config

if TYPE_CHECKING:
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord
    from pyspark.sql import DataFrame


class Record(NamedTuple):
    """One Kafka record; `append_ms` is the broker's append time in epoch ms, never a date in Python."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    append_ms: int


def spark_records(frame: DataFrame) -> list[Record]:
    """A Kafka source's micro-batch read through Spark (the master query's, and a checkpoint's first)."""
    from pyspark.sql import functions as F

    rows = frame.select(
        "key", "value", "topic", "partition", "offset", F.unix_millis("timestamp").alias("append_ms")
    ).collect()
    return [Record(*row) for row in rows]


def planned_offsets(checkpoint: Path, batch_id: int) -> dict[str, dict[str, int]] | None:
    """{topic: {partition: end offset}} of micro-batch `batch_id` from the checkpoint's offset log.

    The log's entry is 'v1', a line of metadata, then a line per source (one here); None when the
    entry is missing or of another version.
    """
    entry = checkpoint / "offsets" / str(batch_id)
    if batch_id < 0 or not entry.is_file():
        return None
    lines = entry.read_text().splitlines()
    if len(lines) != 3 or lines[0] != "v1":
        return None
    return json.loads(lines[2])


def planned_ranges(checkpoint: Path, batch_id: int) -> dict[TopicPartition, tuple[int, int]] | None:
    """{partition: (first offset, end offset)} that micro-batch `batch_id` holds; None when Spark's
    read must be used (a checkpoint's first micro-batch: its start is the topic's earliest offsets).

    A partition absent from the micro-batch before it (added to the topic since) starts at 0: Spark
    reads a new partition from its earliest offset, and records below it are read as far as they exist.
    """
    end, start = planned_offsets(checkpoint, batch_id), planned_offsets(checkpoint, batch_id - 1)
    if end is None or start is None:
        return None
    ranges = {}
    for topic, partitions in end.items():
        for partition, until in partitions.items():
            first = start.get(topic, {}).get(partition, 0)
            if until > first:
                ranges[TopicPartition(topic, int(partition))] = (first, until)
    return ranges


def _record(r: ConsumerRecord) -> Record:
    return Record(r.key, r.value, r.topic, r.partition, r.offset, r.timestamp)


class RangeReader:
    """Reads offset ranges with one consumer kept between micro-batches (no group, no committed offsets)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._consumer: KafkaConsumer | None = None

    def read(self, ranges: dict[TopicPartition, tuple[int, int]]) -> list[Record]:
        """Every record of each [first, end) range, in offset order per partition.

        Raises KafkaTimeoutError when the ranges are not read within `[speed] read_timeout_s`
        (the broker away): the micro-batch is retried, then fails, and nothing is skipped.
        """
        if not ranges:
            return []
        consumer = self._open()
        consumer.assign(list(ranges))
        consumer.resume(*ranges)
        for tp, (first, _) in ranges.items():
            consumer.seek(tp, first)
        left, records = set(ranges), []
        deadline = time.monotonic() + self.config.speed.read_timeout_s
        while left:
            if time.monotonic() > deadline:
                self.close()
                raise KafkaTimeoutError(
                    f"reading {sorted(map(str, left))} took over {self.config.speed.read_timeout_s} s"
                )
            for tp, batch in consumer.poll(timeout_ms=100).items():
                first, end = ranges[tp]
                records += [_record(r) for r in batch if first <= r.offset < end]
            done = {tp for tp in left if consumer.position(tp) >= ranges[tp][1]}
            if done:
                consumer.pause(*done)  # no fetch beyond a range's end while the others are read
                left -= done
        return records

    def _open(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = kafka_consumer(
                self.config,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.config.speed.fetch_max_wait_ms,
                client_id="readnext-speed",
            )
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
