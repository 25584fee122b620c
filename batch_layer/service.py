"""The batch service: new generations by themselves, on a schedule or when enough ratings have streamed in.

Every `[batch] check_s` seconds it compares the master dataset with the current generation: a
run starts when `min_new_ratings` streamed ratings beyond the generation's Kafka offsets have
arrived, or when `interval_s` has passed since the generation was made and at least one has,
and never before the generation is `min_age_s` old nor within `min_age_s` of this service's
last successful run's end (a run takes minutes, and the speed view serves new ratings meanwhile).
Nothing new: no run. The check asks Kafka first: while the topic's end offsets leave too few
records past the generation's marks for a run, the master dataset is not counted (a Spark job).
A failed run is logged with its cause, leaves the current generation
serving, and is tried again at the next check. Runs never overlap: each holds the deployment's
run lock (`batch_lock`), which the kernel releases if the process dies, so a crash never leaves
a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kafka.errors import KafkaError

from batch_layer import metrics
from readnext import artifacts
from readnext.config import Config
from readnext.events import ratings_end_offsets
from readnext.spark import MetastoreUnavailable, require_metastore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("batch_layer")


class BatchRunning(RuntimeError):
    """Another batch run of the same deployment holds the run lock."""


@contextmanager
def batch_lock(config: Config) -> Iterator[None]:
    """Hold the deployment's batch-run lock (one per HBase table prefix) or raise BatchRunning at once."""
    path = config.stack.state_dir / "run" / f"batch-{config.hbase.table_prefix}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise BatchRunning(f"another batch run holds {path} (pid {f.read().strip() or '?'})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def new_stream_ratings(spark: SparkSession, offsets: dict[str, int]) -> int:
    """Streamed ratings in the master dataset beyond the given per-partition Kafka offsets."""
    from pyspark.sql import functions as F

    spark.catalog.refreshTable("ratings")  # the streaming job appends from its own application
    marks = spark.createDataFrame([(o, int(s)) for o, s in offsets.items()] or [("", -1)], "origin STRING, mark BIGINT")
    return (
        spark.table("ratings")
        .where(F.col("source") == "stream")
        .join(F.broadcast(marks), "origin", "left")
        .where(F.col("seq") > F.coalesce(F.col("mark"), F.lit(-1)))
        .count()
    )


def streamed_beyond(ends: dict[str, int], offsets: dict[str, int]) -> int:
    """Records of each partition past its generation's mark, given the partitions' next offsets (same origins)."""
    return sum(max(0, end - 1 - offsets.get(origin, -1)) for origin, end in ends.items())


class BatchService:
    """Decides when a new generation is due and builds it; `run` loops until told to stop."""

    def __init__(self, spark: SparkSession, config: Config) -> None:
        self.spark, self.config = spark, config
        self.failures = 0
        self.ended: float | None = None  # time.monotonic() at the end of this service's last successful run

    def due(self) -> str | None:
        """Why a run is due now, or None."""
        store = artifacts.open_store(self.config)
        current = artifacts.current_generation(store)
        if current is None:
            return "no generation is current yet"
        manifest = artifacts.load_manifest(store, current)
        batch, age = self.config.batch, artifacts.age_s(manifest)
        rested = time.monotonic() - self.ended if self.ended is not None else age
        if min(age, rested) < batch.min_age_s:
            return None
        offsets = manifest.get("stream_offsets", {})
        bound = self._streamed_at_most(offsets)
        if bound is not None and bound < batch.min_new_ratings and (bound == 0 or age < batch.interval_s):
            return None
        new = new_stream_ratings(self.spark, offsets)
        if new >= batch.min_new_ratings:
            return f"{new} new streamed ratings (at least {batch.min_new_ratings})"
        if new and age >= batch.interval_s:
            return f"{new} new streamed ratings and generation {current} is {age:.0f} s old"
        return None

    def _streamed_at_most(self, offsets: dict[str, int]) -> int | None:
        """At least as many as the streamed ratings beyond `offsets`, from the topic's end offsets; None without Kafka.

        Events on their way to the master dataset and dead-lettered ones count too, so when even
        this is too few for a run, the exact count (a Spark job over the master dataset, seconds
        of a core) is not needed.
        """
        try:
            ends = ratings_end_offsets(self.config)
        except KafkaError as e:
            log.warning("batch service: Kafka did not answer (%s); counting in the master dataset", e)
            return None
        return streamed_beyond(ends, offsets)

    def tick(self) -> str | None:
        """One check; returns the new generation's id when it ran one."""
        from batch_layer.generation import build_generation

        reason = self.due()
        if reason is None:
            return None
        log.info("batch service: a new generation is due: %s", reason)
        try:
            with batch_lock(self.config), metrics.RUNNING.track_inprogress():
                generation = build_generation(self.spark, self.config)
        except BatchRunning as e:
            log.info("batch service: %s; checking again later", e)
            return None
        except Exception:
            metrics.RUNS.labels("failure").inc()
            self.failures += 1
            log.exception(
                "batch service: the run failed (%d in a row); the current generation keeps serving, "
                "retrying at the next check",
                self.failures,
            )
            return None
        self.failures, self.ended = 0, time.monotonic()
        metrics.RUNS.labels("success").inc()
        metrics.record_generation(artifacts.load_manifest(artifacts.open_store(self.config), generation))
        log.info("batch service: generation %s is current", generation)
        return generation

    def run(self, stop: threading.Event) -> None:
        store = artifacts.open_store(self.config)
        current = artifacts.current_generation(store)
        if current is not None:
            metrics.record_generation(artifacts.load_manifest(store, current))
        log.info("batch service: watching the master dataset every %s s", self.config.batch.check_s)
        while not stop.is_set():
            started = time.monotonic()
            try:
                require_metastore(self.config)
                self.tick()
            except MetastoreUnavailable as e:
                log.warning("batch service: %s; checking again in %s s", e, self.config.batch.check_s)
            except Exception:
                log.exception("batch service: checking for new ratings failed; trying again later")
            stop.wait(max(0.0, self.config.batch.check_s - (time.monotonic() - started)))
