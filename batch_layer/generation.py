"""A batch run's product: one immutable generation of views, made current only once complete.

A run is a short sequence of named steps (in the manner of Oryx's MLUpdate), each reading and
extending one `Run`: load the master dataset, hold some readers out, train ALS once, evaluate by
folding the held-out readers in (batch_layer/evaluate.py; they are served by fold-in too),
compute the views, write them to Hive and HBase, publish the book factors and the generation's
record, and flip the one pointer of record, the artifact store's CURRENT, last. A failure at any
step removes everything the run wrote (tables, partitions, files, records) and leaves the
previous generation serving; a run killed outright leaves its generation marked as started, and
the next run removes it before it begins. Generations beyond `keep_generations` are pruned.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from batch_layer import views
from batch_layer.evaluate import HeldOut, evaluate_held_out, fold_in_held_out, hold_out_readers
from batch_layer.stages import stage
from batch_layer.train import Factors, collect_factors, fit_als
from readnext import artifacts, logs, master_dataset
from readnext.clients import hbase_pool
from readnext.config import Config
from readnext.foldin import FoldInParams
from readnext.hive import ensure_tables
from readnext.spark import blas_name
from readnext.views import BookRow, GenerationRecords, GenerationViews, drop_hive_views, write_hive_views

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def new_generation_id(now: datetime | None = None) -> str:
    """A sortable id from the UTC time, e.g. 20261122T194512123Z."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class Run:
    """What one batch run has made so far; each step reads what earlier steps left here."""

    spark: SparkSession
    config: Config
    generation: str
    created_at: datetime
    ratings: DataFrame | None = None
    summary: Any = None
    stream_offsets: dict[str, int] = field(default_factory=dict)
    train: DataFrame | None = None
    held: HeldOut = field(default_factory=lambda: HeldOut({}))
    model: ALSModel | None = None
    books: Factors | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, DataFrame] = field(default_factory=dict)
    book_rows: list[BookRow] = field(default_factory=list)
    training_s: float = 0.0
    rejected: int = 0


def load(run: Run) -> None:
    """The master dataset's latest rating per (reader, book), and how far into the stream it reaches."""
    from pyspark.sql import functions as F

    run.ratings = run.train = master_dataset.latest_ratings(run.spark).cache()
    with stage("load ratings") as done:
        run.summary = run.ratings.agg(
            F.count("*").alias("ratings"),
            F.countDistinct("user_id").alias("users"),
            F.countDistinct("book_id").alias("books"),
            F.max("event_time").alias("cutoff"),
        ).first()
        done({"ratings": run.summary.ratings, "users": run.summary.users, "books": run.summary.books})
    if not run.summary.ratings:
        raise ValueError("the master dataset holds no ratings: run 'python -m batch_layer ingest' first")
    run.stream_offsets = master_dataset.stream_offsets(run.spark)
    run.rejected = master_dataset.rejected_ratings(run.spark)


def hold_out(run: Run) -> None:
    if run.config.batch.evaluate:
        with stage("hold out readers for evaluation") as done:
            run.train, run.held = hold_out_readers(run.ratings, run.config.evaluation, run.config.model.seed)
            done({"held_out_readers": len(run.held.readers)})


def train(run: Run) -> None:
    with stage("train ALS") as done:
        started = time.monotonic()
        run.model = fit_als(run.train, run.config.model)
        run.books = collect_factors(run.model.itemFactors)
        run.training_s = round(time.monotonic() - started, 1)
        done({"books": len(run.books.ids), "rank": run.model.rank, "iterations": run.config.model.iterations})


def evaluate(run: Run) -> None:
    if run.held.readers:
        with stage("evaluate (held-out readers folded in)") as done:
            counts = {r.book_id: r["count"] for r in run.train.groupBy("book_id").count().collect()}
            popularity = np.array([counts.get(int(b), 0) for b in run.books.ids], dtype=float)
            run.metrics = done(
                evaluate_held_out(run.held, run.books, popularity, run.config.model, run.config.evaluation)
            )


def compute_views(run: Run) -> None:
    spark, books, batch_cfg = run.spark, run.books, run.config.batch
    with stage("compute views") as done:
        params = FoldInParams.from_config(run.config.model)
        recs = views.user_recommendations(spark, run.model.userFactors, run.ratings, books, params, batch_cfg.top_n)
        if run.held.readers:
            folded = fold_in_held_out(run.held, books, run.config.model, batch_cfg.top_n)
            recs = recs.unionByName(spark.createDataFrame(folded, views.USER_VIEW))
        recs = recs.cache()
        similar = views.similar_books(books, batch_cfg.similar_k)
        pop = views.popularity(run.ratings, batch_cfg.popularity_prior_count).cache()
        meta = views.book_metadata(spark).cache()
        run.frames = {
            "recs": recs,
            "similar": spark.createDataFrame(similar, f"book_id INT, similar {views.REC_TYPE}"),
            "pop": pop,
            "meta": meta,
            "book_factors": spark.createDataFrame(
                [(int(b), v.tolist()) for b, v in zip(books.ids, books.vectors, strict=True)],
                "book_id INT, features ARRAY<FLOAT>",
            ),
        }
        run.book_rows = views.book_rows(meta, pop, books, similar)
        done({"users": recs.count(), "similar": len(similar), "books": len(run.book_rows)})


def write_views(run: Run) -> None:
    f = run.frames
    with stage("write Hive views", run.generation):
        write_hive_views(
            run.spark,
            run.generation,
            {
                "book_factors": f["book_factors"],
                "user_factors": f["recs"].select("user_id", "features"),
                "user_recommendations": f["recs"].select("user_id", "recs"),
                "similar_books": f["similar"],
                "book_popularity": f["pop"],
                "book_metadata": f["meta"],
            },
        )
    with stage("write HBase views", run.generation):
        with hbase_pool(run.config, size=1).connection() as conn:
            tables = GenerationViews(conn, run.config, run.generation)
            tables.create()
        views.write_hbase_users(run.config, tables.users_table, f["recs"])
        views.write_hbase_books(run.config, tables.books_table, run.book_rows)


def publish(run: Run) -> None:
    """The book factors and manifest to the artifact store, the generation's record to Hive and HBase."""
    summary = run.summary
    manifest = {
        "generation": run.generation,
        "created_at": run.created_at.isoformat(),
        "data_cutoff": summary.cutoff.replace(tzinfo=timezone.utc).isoformat() if summary.cutoff else None,
        "stream_offsets": run.stream_offsets,
        "counts": {
            "ratings": summary.ratings,
            "users": summary.users,
            "books": summary.books,
            "rejected": run.rejected,
        },
        "model": dataclasses.asdict(run.config.model),
        "batch": dataclasses.asdict(run.config.batch),
        "metrics": run.metrics,
        "blas": blas_name(run.spark),
        "training_s": run.training_s,
    }
    with stage("publish artifacts", run.config.artifacts.uri):
        store = artifacts.open_store(run.config)
        artifacts.publish_generation(store, run.generation, run.books.ids, run.books.vectors, manifest)
        _record_generation(run.spark, run.config, manifest)


def flip(run: Run) -> None:
    """Make the generation current: the one pointer of record, moved last."""
    with stage("make generation current", run.generation):
        artifacts.set_current(artifacts.open_store(run.config), run.generation)


STEPS: tuple[Callable[[Run], None], ...] = (load, hold_out, train, evaluate, compute_views, write_views, publish, flip)


def build_generation(spark: SparkSession, config: Config, generation: str | None = None) -> str:
    """Train on the master dataset and publish a complete generation; returns its id."""
    master_dataset.ensure(spark)
    ensure_tables(spark, "batch_views")
    remove_leftovers(spark, config)
    run = Run(spark, config, generation or new_generation_id(), datetime.now(timezone.utc))
    logs.set_context(generation=run.generation)
    artifacts.begin_generation(artifacts.open_store(config), run.generation)
    try:
        for step in STEPS:
            step(run)
    except BaseException:
        log.error("generation %s failed; removing what it wrote, the previous generation keeps serving", run.generation)
        _remove_generation(spark, config, run.generation, failed=True)
        raise
    finally:
        generation = run.generation
        spark.catalog.clearCache()
        # The run's DataFrames and ALS model sit in reference cycles; until Python's cycle
        # collector frees them, py4j keeps their JVM objects alive, and with them the persisted
        # factor RDDs and broadcasts (the soak test's JVM heap grew from 133 to 730 MB in 3.5
        # minutes of back-to-back generations without this).
        del run
        gc.collect()
    prune(spark, config)
    return generation


def _record_generation(spark: SparkSession, config: Config, manifest: dict[str, Any]) -> None:
    from pyspark.sql import functions as F

    generation = manifest["generation"]
    row = spark.createDataFrame(
        [(generation, json.dumps(manifest["model"]), json.dumps(manifest["metrics"]))],
        "generation STRING, params STRING, metrics STRING",
    ).select(
        "generation",
        F.lit(manifest["created_at"]).cast("timestamp").alias("created_at"),
        F.lit(manifest["data_cutoff"]).cast("timestamp").alias("data_cutoff"),
        "params",
        "metrics",
    )
    row.write.insertInto("generations")
    with hbase_pool(config, size=1).connection() as conn:
        GenerationRecords(conn, config).record(manifest)


def _forget_generation(spark: SparkSession, generation: str) -> None:
    """Remove a generation that never served from Hive's `generations` history (a small table, rewritten)."""
    from pyspark.sql import functions as F

    history = spark.table("generations")
    if history.where(F.col("generation") == generation).limit(1).count():
        kept = history.where(F.col("generation") != generation).collect()
        spark.createDataFrame(kept, history.schema).write.insertInto("generations", overwrite=True)


def _remove_generation(spark: SparkSession, config: Config, generation: str, failed: bool = False) -> None:
    """Drop a generation's HBase tables and record, Hive partitions and artifacts (never the current one).

    A pruned generation served once and keeps its row in Hive's `generations` history; a failed
    one never served and leaves no trace.
    """
    store = artifacts.open_store(config)
    if artifacts.current_generation(store) == generation:
        log.error("generation %s is current (the pointer moved before the failure): it stays", generation)
        return
    with hbase_pool(config, size=1).connection() as conn:
        GenerationViews(conn, config, generation).drop()
        GenerationRecords(conn, config).delete(generation)
    drop_hive_views(spark, generation)
    if failed:
        _forget_generation(spark, generation)
    artifacts.delete_generation(store, generation)


def remove_leftovers(spark: SparkSession, config: Config) -> list[str]:
    """Remove the generations of runs that died without a clean-up (SIGKILL, power loss).

    Every run marks its generation in the artifact store before writing anything and flips
    `CURRENT` to it last, so a generation newer than the current one (or any, before the first)
    is one whose run never finished. Call it only while holding the batch lock.
    """
    store = artifacts.open_store(config)
    current = artifacts.current_generation(store)
    left = [g for g in artifacts.list_generations(store) if current is None or g > current]
    for generation in left:
        log.warning("removing generation %s, left by a run that did not finish", generation)
        _remove_generation(spark, config, generation, failed=True)
    return left


def prune(spark: SparkSession, config: Config) -> list[str]:
    """Remove all but the newest `keep_generations` generations (the current one always stays)."""
    store = artifacts.open_store(config)
    current = artifacts.current_generation(store)
    known = artifacts.list_generations(store)
    keep = set(known[-config.batch.keep_generations :]) | ({current} if current else set())
    removed = [g for g in known if g not in keep]
    for generation in removed:
        log.info("pruning generation %s", generation)
        _remove_generation(spark, config, generation)
    return removed
