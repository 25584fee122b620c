"""A batch run's product: one immutable generation of views, made current only once complete.

Order of work: hold some readers out, train ALS once, evaluate by folding the held-out readers in
(batch_layer/evaluate.py; they are served by fold-in too), write every view to Hive and HBase,
publish the book factors to the artifact store, then flip the 'current' pointers (HBase first,
the artifact store's CURRENT last). A failure before the flip removes what the run wrote and
leaves the previous generation serving. Generations beyond `keep_generations` are pruned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from batch_layer import views
from batch_layer.evaluate import HeldOut, evaluate_held_out, fold_in_held_out, hold_out_readers
from batch_layer.stages import stage
from batch_layer.train import collect_factors, fit_als, latest_ratings
from readnext import artifacts
from readnext.clients import hbase_connection, hbase_pool
from readnext.config import Config
from readnext.hbase_schema import CURRENT_ROW, ensure_table, generation_table, generations_table
from readnext.hive import ensure_tables
from readnext.spark import blas_name
from readnext.view_reader import ViewReader

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
VIEW_TABLES = [
    "book_factors",
    "user_factors",
    "user_recommendations",
    "similar_books",
    "book_popularity",
    "book_metadata",
]


def new_generation_id(now: datetime | None = None) -> str:
    """A sortable id from the UTC time, e.g. 20261122T194512123Z."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


def current_generation(config: Config) -> str | None:
    """The generation HBase says is being served."""
    conn = hbase_connection(config)
    try:
        return ViewReader(config, conn).current_generation()
    finally:
        conn.close()


def build_generation(spark: SparkSession, config: Config, generation: str | None = None) -> str:
    """Train on the master dataset and publish a complete generation; returns its id."""
    from pyspark.sql import functions as F

    ensure_tables(spark, "master_dataset", "batch_views")
    generation = generation or new_generation_id()
    created_at = datetime.now(timezone.utc)
    model_cfg, batch_cfg = config.model, config.batch
    try:
        ratings = latest_ratings(spark).cache()
        with stage("load ratings") as done:
            summary = ratings.agg(
                F.count("*").alias("ratings"),
                F.countDistinct("user_id").alias("users"),
                F.countDistinct("book_id").alias("books"),
                F.max("event_time").alias("cutoff"),
            ).first()
            done({"ratings": summary.ratings, "users": summary.users, "books": summary.books})
        if not summary.ratings:
            raise ValueError("the master dataset holds no ratings: run 'python -m batch_layer ingest' first")
        stream_offsets = {
            r.origin: r.offset
            for r in spark.table("ratings")
            .where(F.col("source") == "stream")
            .groupBy("origin")
            .agg(F.max("seq").alias("offset"))
            .collect()
        }
        metrics: dict[str, Any] = {}
        train, held = ratings, HeldOut({})
        if batch_cfg.evaluate:
            with stage("hold out readers for evaluation") as done:
                train, held = hold_out_readers(ratings, batch_cfg, model_cfg.seed)
                done({"held_out_readers": len(held.readers)})
        with stage("train ALS") as done:
            model = fit_als(train, model_cfg)
            books = collect_factors(model.itemFactors)
            done({"books": len(books.ids), "rank": model.rank, "iterations": model_cfg.iterations})
        if held.readers:
            with stage("evaluate (held-out readers folded in)") as done:
                counts = {r.book_id: r["count"] for r in train.groupBy("book_id").count().collect()}
                popularity = np.array([counts.get(int(b), 0) for b in books.ids], dtype=float)
                metrics = done(evaluate_held_out(held, books, popularity, model_cfg, batch_cfg))
        with stage("compute views") as done:
            recs = views.user_recommendations(spark, model.userFactors, ratings, books, batch_cfg.top_n)
            if held.readers:
                folded = fold_in_held_out(held, books, model_cfg, batch_cfg.top_n)
                recs = recs.unionByName(spark.createDataFrame(folded, views.USER_VIEW))
            recs = recs.cache()
            similar = spark.createDataFrame(
                views.similar_books(books, batch_cfg.similar_k), f"book_id INT, similar {views.REC_TYPE}"
            ).cache()
            pop = views.popularity(ratings, batch_cfg.popularity_prior_count).cache()
            meta = views.book_metadata(spark).cache()
            book_factors = spark.createDataFrame(
                [(int(b), v.tolist()) for b, v in zip(books.ids, books.vectors, strict=True)],
                "book_id INT, features ARRAY<FLOAT>",
            )
            done({"users": recs.count(), "similar": similar.count(), "popularity": pop.count()})
        with stage("write Hive views", generation):
            views.write_hive(
                spark,
                generation,
                {
                    "book_factors": book_factors,
                    "user_factors": recs.select("user_id", "features"),
                    "user_recommendations": recs.select("user_id", "recs"),
                    "similar_books": similar,
                    "book_popularity": pop,
                    "book_metadata": meta,
                },
            )
        with stage("write HBase views", generation):
            users_table = generation_table(config, generation, "users")
            books_table = generation_table(config, generation, "books")
            with hbase_pool(config, size=1).connection() as conn:
                ensure_table(conn, users_table, "users")
                ensure_table(conn, books_table, "books")
            views.write_hbase_users(config, users_table, recs)
            all_books = (
                meta.join(pop, "book_id", "full_outer")
                .join(book_factors, "book_id", "left")
                .join(similar, "book_id", "left")
            )
            views.write_hbase_books(config, books_table, all_books)
        manifest = {
            "generation": generation,
            "created_at": created_at.isoformat(),
            "data_cutoff": summary.cutoff.replace(tzinfo=timezone.utc).isoformat() if summary.cutoff else None,
            "stream_offsets": stream_offsets,
            "counts": {"ratings": summary.ratings, "users": summary.users, "books": summary.books},
            "model": dataclasses.asdict(model_cfg),
            "batch": dataclasses.asdict(batch_cfg),
            "metrics": metrics,
            "blas": blas_name(spark),
        }
        with stage("publish artifacts", config.artifacts.uri):
            store = artifacts.open_store(config)
            artifacts.publish_generation(store, generation, books.ids, books.vectors, manifest)
        with stage("make generation current", generation):
            _record_generation(spark, config, manifest)
            artifacts.set_current(store, generation)
    except BaseException:
        log.error("generation %s failed; removing what it wrote, the previous generation keeps serving", generation)
        _remove_generation(spark, config, generation)
        raise
    finally:
        spark.catalog.clearCache()
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
        ensure_table(conn, generations_table(config), "generations")
        table = conn.table(generations_table(config))
        table.put(
            generation.encode(),
            {
                b"g:created_at": manifest["created_at"].encode(),
                b"g:data_cutoff": (manifest["data_cutoff"] or "").encode(),
                b"g:stream_offsets": json.dumps(manifest["stream_offsets"]).encode(),
                b"g:metrics": json.dumps(manifest["metrics"]).encode(),
                b"g:params": json.dumps(manifest["model"]).encode(),
            },
        )
        table.put(CURRENT_ROW, {b"g:id": generation.encode()})


def _remove_generation(spark: SparkSession, config: Config, generation: str) -> None:
    """Drop a generation's HBase tables, Hive partitions and artifacts (never the current one)."""
    with hbase_pool(config, size=1).connection() as conn:
        tables = conn.tables()
        for kind in ("users", "books"):
            name = generation_table(config, generation, kind)
            if name.encode() in tables:
                conn.delete_table(name, disable=True)
        if generations_table(config).encode() in tables:
            conn.table(generations_table(config)).delete(generation.encode())
    for table in VIEW_TABLES:
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION (generation='{generation}')")
    artifacts.delete_generation(artifacts.open_store(config), generation)


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
