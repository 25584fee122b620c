"""The streaming job: two Structured Streaming queries on the Kafka ratings topic.

- speed (every `[speed] trigger_ms`): valid events of each micro-batch are folded in, with the
  reader's whole pending history, against the current generation, and written to the speed view.
- master (every `[speed] master_trigger_s`): every event is validated; invalid ones go to the
  dead-letter topic with their original bytes and the reason (headers), valid ones are appended
  to the master dataset (source = 'stream', seq = Kafka offset, origin = '<topic>-<partition>'),
  skipping those already there, so a micro-batch replayed after a crash adds nothing twice.

Both queries keep their Kafka offsets in checkpoints, so a restarted job resumes where it left
off. No record can stop a query: whatever it holds, it is stored or dead-lettered with its reason.
A store that is away (Kafka, HBase or Hive) is retried `[speed] store_attempts` times with
doubling delays; then the micro-batch fails, the job stops with the error, and its service
restarts it from the checkpoint (deploy/service): the events stay in Kafka, nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka.errors import MessageSizeTooLargeError

from readnext import artifacts, logs, master_dataset
from readnext.clients import hbase_connection, hbase_pool, kafka_producer
from readnext.config import Config
from readnext.events import InvalidEvent, StreamEvent, ensure_topics, parse_event
from readnext.model import ModelHolder, ServedModel
from readnext.retry import with_retries
from readnext.views import GenerationViews, SpeedView
from speed_layer import metrics
from speed_layer.kafka_read import RangeReader, Record, planned_ranges, spark_records
from speed_layer.view import rebase, update_readers

if TYPE_CHECKING:
    import happybase
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("speed_layer")


class KnownBooks:
    """Book ids of the current generation's catalog (metadata), for validating events."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.generation: str | None = None
        self.ids: set[int] = set()

    def for_model(self, model: ServedModel) -> set[int]:
        if model.generation != self.generation:
            conn = hbase_connection(self.config)
            try:
                self.ids = GenerationViews(conn, self.config, model.generation).book_ids()
            finally:
                conn.close()
            self.generation = model.generation
        return self.ids


def _events(rows: list[Record], catalog: set[int] | None) -> tuple[list[StreamEvent], list[tuple[Record, str]]]:
    """Split Kafka records into valid events and (record, reason) rejects; no record can make this raise."""
    valid, invalid = [], []
    for r in rows:
        try:
            event = parse_event(bytes(r.value) if r.value is not None else b"", catalog, reference_ms=r.append_ms)
        except InvalidEvent as e:
            invalid.append((r, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - a validation bug must not stop the job: the record goes aside
            log.exception("validating %s-%s@%s failed", r.topic, r.partition, r.offset)
            invalid.append((r, f"could not be validated: {type(e).__name__}"))
            continue
        ts = event.ts_ms if event.ts_ms is not None else int(r.append_ms)
        valid.append(
            StreamEvent(
                f"{r.topic}-{r.partition}", int(r.offset), event.user_id, event.book_id, event.rating, ts, event.writer
            )
        )
    return valid, invalid


def _store_retries(config: Config, work: Callable[[], Any], what: str) -> Any:
    """Retry `work` while a store is away; a value's own error is raised at once."""
    return with_retries(
        work, what, config.speed.store_attempts, config.speed.store_retry_s, give_up=master_dataset.is_record_error
    )


class SpeedUpdates:
    """Writes to the speed view: micro-batches of events, and rebasing when the generation changes.

    One lock orders the two, so a rebase never overwrites a fresher update of the same reader.
    Their HBase connections stay open between micro-batches (a pool, one per thread that writes),
    and so does the consumer that reads each micro-batch's records (`speed_layer.kafka_read`)
    over the offsets in the query's `checkpoint`.
    """

    def __init__(self, config: Config, holder: ModelHolder, catalog: KnownBooks, checkpoint: Path) -> None:
        self.config, self.holder, self.catalog, self.checkpoint = config, holder, catalog, checkpoint
        self.records = RangeReader(config)
        self.lock = threading.Lock()
        self.rebased: str | None = None  # the generation the speed view was last rebased on
        self._swap_lock = threading.Lock()
        self._pool: happybase.ConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def swap_generation(self) -> None:
        """Use a new current generation from now on; its rebase is left to `follow_generation`.

        The watcher calls it (and a micro-batch that finds no generation yet): the generation is
        loaded first and swapped in under the lock, so a micro-batch neither reads the artifact
        store's pointer nor waits for a load. Micro-batches fold in against the newest generation
        from the swap on; rows written before it are the rebase's.
        """
        with self._swap_lock:  # one load at a time: the watcher's and a first micro-batch's
            newer = self.holder.newer()
            if newer is None:
                return
            with self.lock:
                self.holder.swap(newer)
                logs.set_context(generation=newer.generation)

    def follow_generation(self) -> None:
        """Swap in a new current generation, then rebase the speed view on it `[speed] rebase_chunk` readers at a time.

        A generation is rebased on once, whoever swapped it in; a rebase that failed is done again
        at the next call (rows already rebased are left alone). Each chunk holds the lock for
        itself only, and the next one waits `[speed] rebase_pause` times as long as it took, so
        micro-batches go on between chunks with their share of the cores: a reader they update is
        then on the new generation already, and its chunk leaves it alone. Until its row is
        rebased, serving folds a reader in per request (serving_layer/recommend.py).
        """
        self.swap_generation()
        model = self.holder.model
        if model is None or model.generation == self.rebased:
            return
        kept, dropped = self._rebase(model)
        self.rebased = model.generation
        metrics.REBASES.inc()
        log.info("generation %s is current: %d speed rows recomputed, %d absorbed", model.generation, kept, dropped)

    def _rebase(self, model: ServedModel) -> tuple[int, int]:
        stale = self._on_hbase(lambda conn: [u for u, _ in SpeedView(conn, self.config).not_on(model.generation)])
        kept = dropped = 0
        step = self.config.speed.rebase_chunk
        took = 0.0
        for chunk in (stale[at : at + step] for at in range(0, len(stale), step)):
            # at least a moment, the first time too: a micro-batch waiting for the lock takes it (a Lock is not fair)
            time.sleep(max(0.01, took * self.config.speed.rebase_pause))
            with self.lock:
                if self.holder.model is not model:  # a newer generation's rebase takes these rows
                    break
                started = time.perf_counter()
                wrote, deleted = self._on_hbase(
                    lambda conn, chunk=chunk: rebase(conn, self.config, model, self.config.speed.top_n, chunk)
                )
                took = time.perf_counter() - started
            kept, dropped = kept + wrote, dropped + deleted
        return kept, dropped

    def _on_hbase(self, work: Callable[[Any], Any]) -> Any:
        """`work(connection)`; a connection that failed is reopened by the pool before its next use."""
        with self._pool_lock:  # opened on first use: its first connection is made at once
            if self._pool is None:
                self._pool = hbase_pool(self.config, size=2)  # the micro-batches' thread and the watcher's
        with self._pool.connection() as conn:
            return work(conn)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        """foreachBatch of the speed query."""
        with metrics.BATCH_SECONDS.labels("speed").time():
            self._apply(frame, batch_id)

    def _apply(self, frame: DataFrame, batch_id: int) -> None:
        frame.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", "speed")
        started = time.perf_counter()
        rows = self._read(frame, batch_id)
        read_s = time.perf_counter() - started
        if not rows:
            return
        folding = time.perf_counter()
        written = self.fold_in(rows)
        log.info(
            "speed batch %d: %d events, %d readers updated (read %.0f ms, fold-in and HBase %.0f ms)",
            batch_id,
            len(rows),
            written,
            read_s * 1000,
            (time.perf_counter() - folding) * 1000,
        )

    def fold_in(self, rows: list[Record]) -> int:
        """Fold a micro-batch's valid events in, each reader with its pending history; the readers written.

        Before the first generation there is nothing to fold in against: the events are in the
        master dataset (the other query), so the first batch run has them.
        """
        metrics.EVENTS_READ.labels("speed").inc(len(rows))
        if self.holder.model is None:  # the watcher may not have loaded a generation published a moment ago
            _store_retries(self.config, self.swap_generation, "reading the current generation")
        model = self.holder.model
        if model is None:
            log.warning("no current generation yet: %d events wait for the first batch run", len(rows))
            return 0
        valid, _ = _events(rows, self.catalog.for_model(model))
        by_user: dict[int, list[StreamEvent]] = defaultdict(list)
        for event in valid:
            by_user[event.user_id].append(event)
        written = _store_retries(self.config, lambda: self._update(by_user), "writing the speed view")
        done_s = time.time()
        appended = {(f"{r.topic}-{r.partition}", int(r.offset)): r.append_ms for r in rows}
        for event in valid:
            metrics.LATENCY.observe(max(0.0, done_s - appended[(event.origin, event.offset)] / 1000))
        metrics.EVENTS_APPLIED.inc(len(valid))
        metrics.READERS.inc(written)
        return written

    def _read(self, frame: DataFrame, batch_id: int) -> list[Record]:
        ranges = planned_ranges(self.checkpoint, batch_id)
        if ranges is None:
            return spark_records(frame)
        return _store_retries(self.config, lambda: self.records.read(ranges), "reading the micro-batch from Kafka")

    def _update(self, by_user: dict[int, list[StreamEvent]]) -> int:
        with self.lock:
            return self._on_hbase(
                lambda conn: update_readers(conn, self.config, self.holder.model, by_user, self.config.speed.top_n)
            )


class MasterBatch:
    """foreachBatch of the master-dataset query: dead letters out, valid events appended once."""

    def __init__(self, config: Config, holder: ModelHolder, catalog: KnownBooks) -> None:
        self.config, self.holder, self.catalog = config, holder, catalog
        self.producer = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        with metrics.BATCH_SECONDS.labels("master").time():
            self._store(frame, batch_id)

    def _store(self, frame: DataFrame, batch_id: int) -> None:
        frame.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", "master")
        rows = spark_records(frame)
        if not rows:
            return
        metrics.EVENTS_READ.labels("master").inc(len(rows))
        model = self.holder.model  # kept current by the job's watcher
        books = (
            _store_retries(self.config, lambda: self.catalog.for_model(model), "reading the catalog") if model else None
        )
        valid, invalid = _events(rows, books)
        spark = frame.sparkSession
        unstorable = _store_retries(
            self.config, lambda: master_dataset.append_isolating(spark, valid), "appending to the master dataset"
        )
        if unstorable:
            by_place = {(f"{r.topic}-{r.partition}", int(r.offset)): r for r in rows}
            invalid += [(by_place[(e.origin, e.offset)], reason) for e, reason in unstorable]
        if invalid:
            _store_retries(self.config, lambda: self._dead_letters(invalid), "writing to the dead-letter topic")
        metrics.EVENTS_VALID.inc(len(valid) - len(unstorable))
        metrics.EVENTS_DEAD.inc(len(invalid))
        log.info(
            "master batch %d: %d events, %d stored, %d to the dead-letter topic",
            batch_id,
            len(rows),
            len(valid) - len(unstorable),
            len(invalid),
        )

    def _dead_letters(self, invalid: list[tuple[Record, str]]) -> None:
        if self.producer is None:
            self.producer = kafka_producer(self.config)
        sent = []
        for r, reason in invalid:
            headers = [
                ("reason", reason.encode()),
                ("source", f"{r.topic}-{r.partition}@{r.offset}".encode()),
            ]
            key = bytes(r.key) if r.key is not None else None
            value = bytes(r.value) if r.value is not None else b""
            sent.append(
                (
                    self.producer.send(self.config.kafka.dead_letter_topic, key=key, value=value, headers=headers),
                    key,
                    value,
                    headers,
                )
            )
        for future, key, value, headers in sent:
            try:
                future.get(timeout=30)
            except MessageSizeTooLargeError:  # the headers tipped a record at the size limit over it
                cut = value[: len(value) // 2]
                headers = [*headers, ("truncated", str(len(value)).encode())]
                self.producer.send(self.config.kafka.dead_letter_topic, key=key, value=cut, headers=headers).get(30)


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
        self.speed_view: SpeedUpdates | None = None
        self.holder = ModelHolder(artifacts.open_store(config))

    def start(self) -> StreamingJob:
        spark, config = self.spark, self.config
        ensure_topics(config)
        if "master" in self.names:  # only the master query touches the metastore
            master_dataset.ensure(spark)
            spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
        conn = hbase_connection(config)
        try:
            SpeedView(conn, config).ensure()
        finally:
            conn.close()
        catalog = KnownBooks(config)
        if "speed" in self.names:  # only the speed query writes the speed view (a process of its own may run master)
            self.speed_view = SpeedUpdates(config, self.holder, catalog, config.speed.checkpoint_dir / "speed")
            self.speed_view.follow_generation()
        else:
            self.holder.refresh()
        if self.holder.model is not None:  # load the catalog now, not in the first micro-batch
            catalog.for_model(self.holder.model)
        speed = config.speed
        for name, handler, trigger, cap in (
            ("speed", self.speed_view, f"{speed.trigger_ms} milliseconds", speed.max_events_per_batch),
            (
                "master",
                MasterBatch(config, self.holder, catalog),
                f"{speed.master_trigger_s} seconds",
                speed.master_max_events,
            ),
        ):
            if name not in self.names:
                continue
            source = (
                spark.readStream.format("kafka")
                .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
                .option("subscribe", config.kafka.ratings_topic)
                .option("startingOffsets", "earliest")
                .option("maxOffsetsPerTrigger", str(cap))
                .option("kafka.fetch.max.wait.ms", str(speed.fetch_max_wait_ms))
                .load()
            )
            self.queries.append(
                source.writeStream.queryName(f"readnext-{name}")
                .foreachBatch(handler)
                .option("checkpointLocation", str(speed.checkpoint_dir / name))
                .trigger(processingTime=trigger)
                .start()
            )
        self._watcher = threading.Thread(target=self._watch, name="generation-watcher", daemon=True)
        self._watcher.start()
        log.info("streaming from %s: %s", config.kafka.ratings_topic, ", ".join(q.name for q in self.queries))
        return self

    def _watch(self) -> None:
        seen: dict[str, int] = {}
        while not self._stop.wait(self.watch_interval_s):
            try:
                for query in self.queries:
                    name, progress = query.name.removeprefix("readnext-"), query.lastProgress
                    metrics.record_lag(name, progress)
                    seen[name] = metrics.record_parts(name, progress, seen.get(name, -1))
                if self.speed_view is not None:
                    self.speed_view.follow_generation()
                else:
                    self.holder.refresh()
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
        if self.speed_view is not None:
            self.speed_view.records.close()


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
