"""The real servers of the local stack answer as the layers will use them."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

from kafka.admin import NewTopic

from readnext.clients import hbase_connection, hbase_pool, hbase_table_name, kafka_admin, kafka_consumer, kafka_producer
from readnext.spark import read_kafka_topic
from tests.conftest import session_name, sweep_dead_sessions
from tests.waiting import wait_for


def test_kafka_topic_round_trip(stack, config, unique_name):
    admin = kafka_admin(config)
    try:
        admin.create_topics([NewTopic(unique_name, num_partitions=3, replication_factor=1)])
        assert unique_name in admin.list_topics()
        sent = [(f"user-{i % 4}".encode(), f'{{"n": {i}}}'.encode()) for i in range(20)]
        producer = kafka_producer(config)
        for key, value in sent:
            producer.send(unique_name, key=key, value=value)
        producer.flush()
        producer.close()
        consumer = kafka_consumer(config, unique_name, auto_offset_reset="earliest", consumer_timeout_ms=10_000)
        got = []
        for record in consumer:
            got.append((record.key, record.value, record.partition))
            if len(got) == len(sent):
                break
        consumer.close()
        assert sorted((k, v) for k, v, _ in got) == sorted(sent)
        partition_of = {}
        for key, _, partition in got:
            assert partition_of.setdefault(key, partition) == partition, "one key, one partition"
        assert len(set(partition_of.values())) > 1, "keys spread over the topic's partitions"
    finally:
        admin.delete_topics([unique_name])
        admin.close()


def test_hbase_put_get_scan_delete(stack, config, unique_name):
    pool = hbase_pool(config, size=1)
    name = hbase_table_name(config, unique_name)
    with pool.connection() as conn:
        conn.create_table(name, {"v": {"max_versions": 1}})
        try:
            assert name.encode() in conn.tables()
            table = conn.table(name)
            for user in range(5):
                table.put(f"u{user:04d}".encode(), {b"v:top": f"[{user}]".encode(), b"v:ts": str(user).encode()})
            assert table.row(b"u0003") == {b"v:top": b"[3]", b"v:ts": b"3"}
            scanned = list(table.scan(row_start=b"u0001", row_stop=b"u0004", columns=[b"v:top"]))
            assert scanned == [(f"u{u:04d}".encode(), {b"v:top": f"[{u}]".encode()}) for u in (1, 2, 3)]
            table.delete(b"u0003")
            assert table.row(b"u0003") == {}
            assert len(list(table.scan())) == 4
        finally:
            conn.delete_table(name, disable=True)
        assert name.encode() not in conn.tables()


def test_spark_hive_table_round_trip(spark, unique_name):
    spark.sql(f"CREATE TABLE {unique_name} (user_id INT, book_id INT, rating TINYINT) STORED AS PARQUET")
    spark.sql(f"INSERT INTO {unique_name} VALUES (1, 10, 5), (1, 11, 3), (2, 10, 4)")
    rows = spark.sql(f"SELECT user_id, book_id, rating FROM {unique_name} ORDER BY user_id, book_id").collect()
    assert [tuple(r) for r in rows] == [(1, 10, 5), (1, 11, 3), (2, 10, 4)]
    assert spark.catalog.getTable(unique_name).tableType == "MANAGED"
    assert spark.conf.get("spark.sql.catalogImplementation") == "hive"


def test_spark_reads_kafka_topic_through_connector(stack, spark, config, unique_name):
    admin = kafka_admin(config)
    try:
        admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])
        producer = kafka_producer(config)
        sent = [f'{{"user_id": {i}, "book_id": {100 + i}, "rating": {1 + i % 5}}}' for i in range(12)]
        for i, value in enumerate(sent):  # explicit partitions: keyless sends stick to one partition
            producer.send(unique_name, value=value.encode(), partition=i % 2)
        producer.flush()
        producer.close()

        def values():
            frame = read_kafka_topic(spark, config, unique_name)
            return {r.value for r in frame.selectExpr("CAST(value AS STRING) AS value").collect()} == set(sent)

        wait_for(values, "Spark to read the 12 acknowledged messages", timeout=30, every=1)
        frame = read_kafka_topic(spark, config, unique_name)
        assert frame.select("partition").distinct().count() == 2
    finally:
        admin.delete_topics([unique_name])
        admin.close()


def test_the_tables_topics_and_run_files_of_a_killed_test_session_are_swept(stack, config):
    """What a session left behind when it was killed goes at the next session's start; a live session's stays."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, ours = f"t{int(gone.stdout)}_x", session_name("sweep")
    run = config.stack.state_dir / "run"
    conn = hbase_connection(config)
    admin = kafka_admin(config)
    try:
        for prefix in (dead, ours):
            conn.create_table(f"{prefix}_speed", {"v": {}})
            (run / f"batch-{prefix}.lock").write_text("1")
            (run / f"metrics-speed-{prefix}").mkdir(exist_ok=True)
            (run / f"metrics-speed-{prefix}" / "counter_1.db").write_bytes(b"0")
        admin.create_topics([NewTopic(f"{p}-ratings", num_partitions=1, replication_factor=1) for p in (dead, ours)])
        swept = set(sweep_dead_sessions(config))
        assert {f"{dead}_speed", f"{dead}-ratings", f"batch-{dead}.lock", f"metrics-speed-{dead}"} <= swept
        assert not {f"{ours}_speed", f"{ours}-ratings", f"batch-{ours}.lock", f"metrics-speed-{ours}"} & swept
        assert f"{ours}_speed".encode() in conn.tables() and f"{dead}_speed".encode() not in conn.tables()
        assert sorted(p.name for p in run.glob(f"*-{dead}*")) == []
        assert sorted(p.name for p in run.glob(f"*-{ours}*")) == [f"batch-{ours}.lock", f"metrics-speed-{ours}"]
    finally:
        conn.delete_table(f"{ours}_speed", disable=True)
        admin.delete_topics([f"{ours}-ratings"])
        conn.close()
        admin.close()
        (run / f"batch-{ours}.lock").unlink()
        shutil.rmtree(run / f"metrics-speed-{ours}")


def test_the_layers_tables_keep_read_blocks_in_hbase_block_cache(stack, config, unique_name):
    from readnext.accounts import Accounts, Tokens
    from readnext.views import FAMILIES, drop_table, ensure_table

    conn = hbase_connection(config)
    names = [f"{unique_name}_{kind}" for kind in FAMILIES]
    own = dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, table_prefix=unique_name))
    try:
        for name, kind in zip(names, FAMILIES, strict=True):
            ensure_table(conn, name, kind)
        for store in (Tokens(conn, own), Accounts(conn, own)):
            store.ensure()
            names.append(store.name)
        for name in names:
            families = conn.table(name).families().values()
            assert families and all(f["block_cache_enabled"] and f["max_versions"] == 1 for f in families), name
    finally:
        for name in names:
            drop_table(conn, name)
        conn.close()
