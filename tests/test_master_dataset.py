"""Stream appends to the master dataset on real Spark and Hive: once each, and a bad value stays alone."""

from __future__ import annotations

from readnext import master_dataset
from readnext.events import StreamEvent
from readnext.hive import ensure_tables


def _stored(spark):
    spark.catalog.refreshTable("ratings")
    rows = spark.table("ratings").where("source = 'stream'").select("origin", "seq", "user_id", "book_id").collect()
    return {(r.origin, r.seq): (r.user_id, r.book_id) for r in rows}


def test_a_value_no_layer_can_store_is_set_aside_and_the_rest_is_stored_once(spark, hive_db):
    ensure_tables(spark, "master_dataset")
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    good = [StreamEvent("r-0", i, 10 + i, 1, 4, 1_700_000_000_000) for i in range(6)]
    too_late = StreamEvent("r-0", 6, 99, 1, 4, 2**63)  # the record, had it passed validation
    overflow = StreamEvent("r-1", 0, 98, 1, 4, 2**62)  # fits a BIGINT, not a timestamp
    events = [*good[:3], too_late, *good[3:], overflow]
    unstorable = master_dataset.append_isolating(spark, events)
    assert {e for e, _ in unstorable} == {too_late, overflow}
    assert all(reason.startswith("cannot be stored:") for _, reason in unstorable)
    assert _stored(spark) == {("r-0", e.offset): (e.user_id, 1) for e in good}
    assert master_dataset.append_isolating(spark, good) == []  # a replay adds nothing
    assert len(_stored(spark)) == len(good)


def test_the_append_writes_the_layout_of_the_ddl_in_hive(spark, hive_db):
    ensure_tables(spark, "master_dataset")
    assert tuple(spark.table("ratings").columns) == master_dataset.RATINGS_COLUMNS, "hive/master_dataset.sql"


def test_an_older_ratings_table_gains_the_writer_column_and_streamed_rows_keep_their_writer(spark, hive_db):
    old_layout = "user_id INT, book_id INT, rating TINYINT, event_time TIMESTAMP, seq BIGINT, origin STRING"
    spark.sql(f"CREATE TABLE ratings ({old_layout}) PARTITIONED BY (source STRING, event_date DATE) STORED AS PARQUET")
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    spark.sql(
        "INSERT INTO ratings PARTITION (source, event_date) VALUES (1, 2, 3, now(), 0, 'f', 'import', current_date())"
    )
    master_dataset.ensure(spark)
    assert tuple(spark.table("ratings").columns) == master_dataset.RATINGS_COLUMNS
    master_dataset.append_stream_events(spark, [StreamEvent("r-0", 0, 7, 1, 4, 1_700_000_000_000, "reader:7")])
    spark.catalog.refreshTable("ratings")
    rows = {(r.user_id, r.writer) for r in spark.table("ratings").collect()}
    assert rows == {(1, None), (7, "reader:7")}
