"""The streaming job: two Structured Streaming queries on the Kafka ratings topic.

- speed (every `[speed] trigger_ms`): valid events of each micro-batch are folded in, with the
  reader's whole pending history, against the current generation, and written to the speed view.
- master (every `[speed] master_trigger_s`): every event is validated; invalid ones go to the
  dead-letter topic with their original bytes and the reason (headers), valid ones are appended
  to the master dataset (source = 'stream', seq = Kafka offset, origin = '<topic>-<partition>'),
  skipping those already there, so a micro-batch replayed after a crash adds nothing twice.

Both queries keep their Kafka offsets in checkpoints, so a restarted job resumes where it left
off. A failing micro-batch (Kafka, HBase or Hive unavailable) stops the job with the error; the
events stay in Kafka and are processed on restart: nothing is skipped silently.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from readnext import artifacts
from readnext.clients import hbase_connection, kafka_admin, kafka_producer
from readnext.config import Config
from readnext.events import InvalidEvent, parse_event
from readnext.hbase_schema import generation_table
from readnext.model import ModelHolder, ServedModel
from speed_layer.view import StreamEvent, ensure_speed_table, rebase, update_readers

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("speed_layer")


def ensure_topics(config: Config) -> None:
    """Create the ratings and dead-letter topics if they are missing."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = kafka_admin(config)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(t, num_partitions=config.speed.topic_partitions, replication_factor=1)
            for t in (config.kafka.ratings_topic, config.kafka.dead_letter_topic)
            if t not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()


class Catalog:
    """Book ids of the current generation's catalog (metadata), for validating events."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.generation: str | None = None
        self.ids: set[int] = set()

    def for_model(self, model: ServedModel) -> set[int]:
        if model.generation != self.generation:
            conn = hbase_connection(self.config)
            try:
                table = conn.table(generation_table(self.config, model.generation, "books"))
                self.ids = {int(key) for key, _ in table.scan(filter=b"KeyOnlyFilter()")}
            finally:
                conn.close()
            self.generation = model.generation
        return self.ids


def _events(rows: list[Any], catalog: set[int] | None) -> tuple[list[StreamEvent], list[tuple[Any, str]]]:
    """Split Kafka rows into valid events and (row, reason) rejects."""
    valid, invalid = [], []
    for r in rows:
        try:
            event = parse_event(bytes(r.value) if r.value is not None else b"", catalog)
        except InvalidEvent as e:
            invalid.append((r, str(e)))
            continue
        ts = event.ts_ms if event.ts_ms is not None else int(r.timestamp.timestamp() * 1000)
        valid.append(
            StreamEvent(f"{r.topic}-{r.partition}", int(r.offset), event.user_id, event.book_id, event.rating, ts)
        )
    return valid, invalid


class SpeedBatch:
    """foreachBatch of the speed query."""

    def __init__(self, config: Config, holder: ModelHolder, catalog: Catalog) -> None:
        self.config, self.holder, self.catalog = config, holder, catalog

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        rows = frame.select("value", "topic", "partition", "offset", "timestamp").collect()
        conn = hbase_connection(self.config)
        try:
            ensure_speed_table(conn, self.config)
            if self.holder.refresh():
                kept, dropped = rebase(conn, self.config, self.holder.model, self.config.speed.top_n)
                log.info(
                    "generation %s is current: %d speed rows recomputed, %d absorbed",
                    self.holder.model.generation,
                    kept,
                    dropped,
                )
            model = self.holder.model
            if not rows:
                return
            if model is None:
                log.warning("no current generation yet: %d events wait for the first batch run", len(rows))
                return
            valid, _ = _events(rows, self.catalog.for_model(model))
            by_user: dict[int, list[StreamEvent]] = defaultdict(list)
            for event in valid:
                by_user[event.user_id].append(event)
            written = update_readers(conn, self.config, model, by_user, self.config.speed.top_n)
            log.info("speed batch %d: %d events, %d readers updated", batch_id, len(rows), written)
        finally:
            conn.close()


class MasterBatch:
    """foreachBatch of the master-dataset query: dead letters out, valid events appended once."""

    def __init__(self, config: Config, holder: ModelHolder, catalog: Catalog) -> None:
        self.config, self.holder, self.catalog = config, holder, catalog
        self.producer = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        rows = frame.select("key", "value", "topic", "partition", "offset", "timestamp").collect()
        if not rows:
            return
        self.holder.refresh()
        model = self.holder.model
        valid, invalid = _events(rows, self.catalog.for_model(model) if model else None)
        if invalid:
            self._dead_letters(invalid)
        spark = frame.sparkSession
        if valid:
            new = spark.createDataFrame(
                [(e.user_id, e.book_id, e.rating, e.ts_ms, e.offset, e.origin) for e in valid],
                "user_id INT, book_id INT, rating INT, ts_ms BIGINT, seq BIGINT, origin STRING",
            )
            origins = sorted({e.origin for e in valid})
            present = (
                spark.table("ratings")
                .where((F.col("source") == "stream") & F.col("origin").isin(origins))
                .where(F.col("seq") >= min(e.offset for e in valid))
                .select("origin", "seq")
            )
            fresh = new.join(present, ["origin", "seq"], "left_anti")
            event_time = (F.col("ts_ms") / 1000).cast("timestamp")
            fresh.select(
                "user_id",
                "book_id",
                F.col("rating").cast("tinyint"),
                event_time.alias("event_time"),
                "seq",
                "origin",
                F.lit("stream").alias("source"),
                F.to_date(event_time).alias("event_date"),
            ).write.insertInto("ratings")
        log.info(
            "master batch %d: %d events, %d valid, %d to the dead-letter topic",
            batch_id,
            len(rows),
            len(valid),
            len(invalid),
        )

    def _dead_letters(self, invalid: list[tuple[Any, str]]) -> None:
        if self.producer is None:
            self.producer = kafka_producer(self.config)
        for r, reason in invalid:
            headers = [
                ("reason", reason.encode()),
                ("source", f"{r.topic}-{r.partition}@{r.offset}".encode()),
            ]
            self.producer.send(
                self.config.kafka.dead_letter_topic,
                key=bytes(r.key) if r.key is not None else None,
                value=bytes(r.value) if r.value is not None else b"",
                headers=headers,
            )
        self.producer.flush()


def start(spark: SparkSession, config: Config) -> list[StreamingQuery]:
    """Start both queries on the ratings topic; returns them running."""
    from readnext.hive import ensure_tables

    ensure_topics(config)
    ensure_tables(spark, "master_dataset")
    conn = hbase_connection(config)
    try:
        ensure_speed_table(conn, config)
    finally:
        conn.close()
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    holder = ModelHolder(artifacts.open_store(config))
    holder.refresh()
    catalog = Catalog(config)
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", config.kafka.ratings_topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    checkpoints = config.speed.checkpoint_dir
    queries = []
    for name, handler, trigger in (
        ("speed", SpeedBatch(config, holder, catalog), f"{config.speed.trigger_ms} milliseconds"),
        ("master", MasterBatch(config, holder, catalog), f"{config.speed.master_trigger_s} seconds"),
    ):
        queries.append(
            source.writeStream.queryName(f"readnext-{name}")
            .foreachBatch(handler)
            .option("checkpointLocation", str(checkpoints / name))
            .trigger(processingTime=trigger)
            .start()
        )
    return queries


def run(spark: SparkSession, config: Config, until: Callable[[], bool] | None = None) -> None:
    """Run until a query fails (raises its error) or `until()` says stop."""
    queries = start(spark, config)
    log.info("streaming from %s: %s", config.kafka.ratings_topic, ", ".join(q.name for q in queries))
    try:
        while all(q.isActive for q in queries):
            if until is not None and until():
                break
            time.sleep(0.5)
        for q in queries:
            if q.exception() is not None:
                raise RuntimeError(f"query {q.name} failed: {q.exception()}")
    finally:
        for q in queries:
            q.stop()
