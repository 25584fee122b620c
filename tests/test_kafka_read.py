"""The speed query's own read of a micro-batch against real Kafka and Spark: the records Spark planned, no more."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

from readnext.clients import kafka_admin, kafka_producer
from speed_layer.kafka_read import RangeReader, planned_offsets, planned_ranges, spark_records
from tests.waiting import committed_events, wait_for


@pytest.fixture
def topic(stack, config, unique_name):
    name = f"{unique_name}-read"
    admin = kafka_admin(config)
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    yield name
    admin.delete_topics([name])
    admin.close()


def test_each_micro_batch_reads_what_spark_planned_for_it(spark, config, topic, tmp_path):
    """Rounds of records, some partitions idle in a round: every micro-batch after the first reads
    by its planned offsets exactly the records Spark's frame holds, and together they hold each
    record once."""
    reader, checkpoint = RangeReader(config), tmp_path / "checkpoint"
    compared, seen, lock = [], [], threading.Lock()

    def handler(frame, batch_id):
        spark_read = spark_records(frame)
        ranges = planned_ranges(checkpoint, batch_id)
        with lock:
            seen.extend(spark_read)
            if ranges is not None:
                compared.append((sorted(reader.read(ranges)), sorted(spark_read)))

    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    query = (
        source.writeStream.foreachBatch(handler)
        .option("checkpointLocation", str(checkpoint))
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    producer = kafka_producer(config)
    sent = 0
    try:
        for round_ in range(6):
            partitions = [0, 1, 2] if round_ % 2 == 0 else [round_ % 3]  # odd rounds leave two partitions idle
            for k in range(10):
                producer.send(
                    topic, key=b"%d" % k, value=b"r%d-%d" % (round_, k), partition=partitions[k % len(partitions)]
                )
                sent += 1
            producer.flush()
            wait_for(lambda n=sent: committed_events(checkpoint) >= n, f"{sent} records committed", 60)
    finally:
        query.stop()
        producer.close()
        reader.close()
    assert len(compared) >= 3, "several micro-batches read by their offsets"
    for ours, theirs in compared:
        assert ours == theirs and ours, "the same records, keys, values and append times"
    assert sorted((r.partition, r.offset) for r in seen) == sorted(set((r.partition, r.offset) for r in seen))
    assert len(seen) == sent


def test_a_range_past_the_end_of_the_log_fails_in_time(config, topic):
    """A broker that cannot deliver the range (here: offsets not written yet) makes the read raise, not hang."""
    reader = RangeReader(dataclasses.replace(config, speed=dataclasses.replace(config.speed, read_timeout_s=1.0)))
    try:
        with pytest.raises(KafkaTimeoutError):
            reader.read({TopicPartition(topic, 0): (0, 5)})
    finally:
        reader.close()


def test_an_offset_log_entry_of_another_version_is_not_read(tmp_path):
    """An entry this code does not know is left to Spark's read rather than misread."""
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "0").write_text('v1\n{}\n{"t":{"0":4}}')
    (tmp_path / "offsets" / "1").write_text('v1\n{}\n{"t":{"0":9,"1":2}}')
    (tmp_path / "offsets" / "2").write_text('v2\n{}\n{"t":{"0":12,"1":2}}')
    assert planned_offsets(tmp_path, 1) == {"t": {"0": 9, "1": 2}}
    assert planned_ranges(tmp_path, 0) is None, "a checkpoint's first micro-batch starts at the earliest offsets"
    assert planned_ranges(tmp_path, 1) == {TopicPartition("t", 0): (4, 9), TopicPartition("t", 1): (0, 2)}
    assert planned_ranges(tmp_path, 2) is None
