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

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from readnext import artifacts
from readnext.clients import hbase_connection, kafka_producer
from readnext.config import Config
from readnext.events import InvalidEvent, ensure_topics, parse_event
from readnext.hbase_schema import generation_table
from readnext.model import ModelHolder, ServedModel
from speed_layer.view import StreamEvent, ensure_speed_table, rebase, update_readers

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("speed_layer")


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


class SpeedView:
    """Writes to the speed view: micro-batches of events, and rebasing when the generation changes.

    One lock orders the two, so a rebase never overwrites a fresher update of the same reader.
    """

    def __init__(self, config: Config, holder: ModelHolder, catalog: Catalog) -> None:
        self.config, self.holder, self.catalog = config, holder, catalog
        self.lock = threading.Lock()

    def follow_generation(self) -> None:
        """Swap in a new current generation and rebase the speed view on it."""
        with self.lock:
            if not self.holder.refresh():
                return
            model = self.holder.model
            conn = hbase_connection(self.config)
            try:
                kept, dropped = rebase(conn, self.config, model, self.config.speed.top_n)
            finally:
                conn.close()
        log.info("generation %s is current: %d speed rows recomputed, %d absorbed", model.generation, kept, dropped)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        """foreachBatch of the speed query."""
        frame.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", "speed")
        rows = frame.select("value", "topic", "partition", "offset", "timestamp").collect()
        self.follow_generation()
        if not rows:
            return
        model = self.holder.model
        if model is None:
            log.warning("no current generation yet: %d events wait for the first batch run", len(rows))
            return
        valid, _ = _events(rows, self.catalog.for_model(model))
        by_user: dict[int, list[StreamEvent]] = defaultdict(list)
        for event in valid:
            by_user[event.user_id].append(event)
        with self.lock:
            conn = hbase_connection(self.config)
            try:
                written = update_readers(conn, self.config, self.holder.model, by_user, self.config.speed.top_n)
            finally:
                conn.close()
        log.info("speed batch %d: %d events, %d readers updated", batch_id, len(rows), written)


class MasterBatch:
    """foreachBatch of the master-dataset query: dead letters out, valid events appended once."""

    def __init__(self, config: Config, holder: ModelHolder, catalog: Catalog) -> None:
        self.config, self.holder, self.catalog = config, holder, catalog
        self.producer = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        frame.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", "master")
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


class StreamingJob:
    """Both queries plus a watcher that rebases the speed view as soon as a new generation is current."""

    def __init__(
        self,
        spark: SparkSession,
        config: Config,
        watch_interval_s: float = 1.0,
        queries: tuple[str, ...] = ("speed", "master"),
    ) -> None:
        self.spark, self.config, self.watch_interval_s, self.names = spark, config, watch_interval_s, queries
        self.queries: list[StreamingQuery] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.speed_view: SpeedView | None = None

    def start(self) -> StreamingJob:
        from readnext.hive import ensure_tables

        spark, config = self.spark, self.config
        ensure_topics(config)
        if "master" in self.names:  # only the master query touches the metastore
            ensure_tables(spark, "master_dataset")
            spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
        conn = hbase_connection(config)
        try:
            ensure_speed_table(conn, config)
        finally:
            conn.close()
        holder = ModelHolder(artifacts.open_store(config))
        catalog = Catalog(config)
        self.speed_view = SpeedView(config, holder, catalog)
        self.speed_view.follow_generation()
        if holder.model is not None:  # load the catalog now, not in the first micro-batch
            catalog.for_model(holder.model)
        source = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
            .option("subscribe", config.kafka.ratings_topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        checkpoints = config.speed.checkpoint_dir
        for name, handler, trigger in (
            ("speed", self.speed_view, f"{config.speed.trigger_ms} milliseconds"),
            ("master", MasterBatch(config, holder, catalog), f"{config.speed.master_trigger_s} seconds"),
        ):
            if name not in self.names:
                continue
            self.queries.append(
                source.writeStream.queryName(f"readnext-{name}")
                .foreachBatch(handler)
                .option("checkpointLocation", str(checkpoints / name))
                .trigger(processingTime=trigger)
                .start()
            )
        self._watcher = threading.Thread(target=self._watch, name="generation-watcher", daemon=True)
        self._watcher.start()
        log.info("streaming from %s: %s", config.kafka.ratings_topic, ", ".join(q.name for q in self.queries))
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_interval_s):
            try:
                self.speed_view.follow_generation()
            except Exception:  # noqa: BLE001 - keep watching; the next micro-batch retries and fails loudly
                log.exception("could not follow the current generation; retrying")

    def failures(self) -> list[str]:
        return [f"{q.name}: {q.exception()}" for q in self.queries if q.exception() is not None]

    def stop(self) -> None:
        self._stop.set()
        for q in self.queries:
            q.stop()
        if self._watcher is not None:
            self._watcher.join()


def run(
    spark: SparkSession,
    config: Config,
    until: Callable[[], bool] | None = None,
    queries: tuple[str, ...] = ("speed", "master"),
) -> None:
    """Run until a query fails (raises its error) or `until()` says stop."""
    job = StreamingJob(spark, config, queries=queries).start()
    try:
        while all(q.isActive for q in job.queries):
            if until is not None and until():
                break
            time.sleep(0.5)
        if job.failures():
            raise RuntimeError("; ".join(job.failures()))
    finally:
        job.stop()
