"""A quick end-to-end check of a running stack: Kafka, HBase through Thrift, Spark with Hive and Kafka."""

from __future__ import annotations

import sys
import time
import uuid

from kafka.admin import NewTopic

from readnext.clients import hbase_pool, hbase_table_name, kafka_admin, kafka_consumer, kafka_producer
from readnext.config import Config, load_config
from readnext.spark import get_spark, read_kafka_topic, stop_spark


def check_kafka(config: Config, topic: str) -> str:
    admin = kafka_admin(config)
    if topic not in admin.list_topics():
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    token = uuid.uuid4().hex.encode()
    producer = kafka_producer(config)
    producer.send(topic, value=token).get(timeout=30)
    producer.close()
    consumer = kafka_consumer(config, topic, auto_offset_reset="earliest", consumer_timeout_ms=15_000)
    found = any(record.value == token for record in consumer)
    consumer.close()
    if not found:
        raise RuntimeError(f"produced a record to {topic} but could not read it back")
    return f"produced and consumed a record on topic {topic}"


def check_hbase(config: Config) -> str:
    name = hbase_table_name(config, "smoke")
    with hbase_pool(config, size=1).connection() as conn:
        if name.encode() not in conn.tables():
            conn.create_table(name, {"c": {"max_versions": 1}})
        token = uuid.uuid4().hex.encode()
        conn.table(name).put(b"row", {b"c:token": token})
        if conn.table(name).row(b"row").get(b"c:token") != token:
            raise RuntimeError(f"HBase table {name} did not return what was written")
    return f"wrote and read a row of HBase table {name}"


def check_spark(config: Config, topic: str) -> str:
    spark = get_spark(config, app_name="readnext-smoke")
    spark.sparkContext.setLogLevel("ERROR")
    spark.sql("CREATE TABLE IF NOT EXISTS smoke_check (at BIGINT) STORED AS PARQUET")
    spark.sql(f"INSERT INTO smoke_check VALUES ({int(time.time())})")
    hive_rows = spark.table("smoke_check").count()
    kafka_rows = read_kafka_topic(spark, config, topic).count()
    stop_spark(spark)
    return f"Spark read {hive_rows} row(s) from Hive table smoke_check and {kafka_rows} record(s) from Kafka"


def main() -> int:
    config = load_config()
    topic = f"{config.kafka.ratings_topic}-smoke"
    for name, check in (
        ("kafka", lambda: check_kafka(config, topic)),
        ("hbase", lambda: check_hbase(config)),
        ("spark", lambda: check_spark(config, topic)),
    ):
        t0 = time.monotonic()
        try:
            print(f"smoke {name}: ok, {check()} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report any failure of the check itself and stop
            print(f"smoke {name}: FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
