"""A batch run publishes a complete generation to Hive, HBase and the artifact store, or nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from batch_layer import generation as gen_module
from batch_layer.generation import build_generation, current_generation
from batch_layer.ingest import DataFiles, ingest
from batch_layer.show import show
from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.hbase_schema import generation_table, unpack_floats, unpack_ids, unpack_ratings
from tests.conftest import drop_sandbox
from tests.data import taste_ratings, write_books, write_ratings


@pytest.fixture
def small_config(config, tmp_path, unique_name):
    """Fast model settings, and HBase tables and artifacts of the test's own."""
    return dataclasses.replace(
        config,
        hbase=dataclasses.replace(config.hbase, table_prefix=unique_name),
        artifacts=dataclasses.replace(config.artifacts, uri=str(tmp_path / "artifacts")),
        model=dataclasses.replace(config.model, rank=8, iterations=8, reg=0.05, alpha=5.0),
        batch=dataclasses.replace(config.batch, top_n=10, similar_k=5, eval_users=500, keep_generations=2),
    )


@pytest.fixture
def master(spark, hive_db, tmp_path):
    rows = taste_ratings(seed=11)
    ingest(spark, DataFiles(ratings=write_ratings(tmp_path / "r.csv", rows), books=write_books(tmp_path / "b.csv")))
    return rows


def test_generation_is_complete_everywhere_and_beats_popularity(stack, spark, master, small_config):
    config = small_config
    try:
        generation = build_generation(spark, config)
        assert current_generation(config) == generation
        store = artifacts.open_store(config)
        assert artifacts.current_generation(store) == generation
        ids, factors, manifest = artifacts.load_generation(store, generation)
        assert factors.shape == (150, 8) and sorted(ids.tolist()) == list(range(1, 151))
        metrics = manifest["metrics"]
        assert metrics["als"]["ndcg@10"] > metrics["popularity"]["ndcg@10"]
        assert manifest["blas"].startswith("dev.ludovic.netlib.blas."), "the manifest says which BLAS trained it"
        assert manifest["counts"] == {"ratings": len(master), "users": 240, "books": 150}
        assert manifest["data_cutoff"] is not None

        for table in gen_module.VIEW_TABLES:
            partitions = [r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]
            assert partitions == [f"generation={generation}"], table
        stored = json.loads(spark.table("generations").where(f"generation = '{generation}'").first().metrics)
        assert stored == metrics

        known = {}
        for user, book, rating in master:
            known.setdefault(user, {})[book] = rating
        conn = hbase_connection(config)
        users = conn.table(generation_table(config, generation, "users"))
        rows = dict(users.scan())
        assert len(rows) == 240
        row = rows[b"7"]
        recs = unpack_ids(row[b"r:books"])
        assert len(recs) == 10 and not set(recs.tolist()) & set(known[7])
        scores = unpack_floats(row[b"r:scores"])
        assert np.all(np.diff(scores) <= 1e-6), "best first"
        history = dict(
            zip(unpack_ids(row[b"h:books"]).tolist(), unpack_ratings(row[b"h:ratings"]).tolist(), strict=True)
        )
        assert history == known[7]
        vector = unpack_floats(row[b"f:v"])
        row_of = {int(b): k for k, b in enumerate(ids)}
        expected = np.asarray(factors, dtype=np.float64) @ vector
        assert np.allclose([expected[row_of[b]] for b in recs], scores, rtol=1e-4, atol=1e-5)
        book = conn.table(generation_table(config, generation, "books")).row(b"3")
        assert book[b"m:title"] == b'Book 3, "genre 3"'
        assert int(book[b"p:count"]) == sum(1 for _, b, _ in master if b == 3)
        similar = unpack_ids(book[b"s:books"])
        assert len(similar) == 5 and 3 not in similar.tolist()
        conn.close()
        shown = show(config, 7, 3)
        assert shown.startswith(f"generation {generation}")
        assert "top 3 for reader 7 (30 books rated)" in shown and f"(book {recs[0]}," in shown
    finally:
        drop_sandbox(config)


def test_failed_run_leaves_previous_generation_serving_and_old_ones_are_pruned(
    stack, spark, master, small_config, monkeypatch
):
    config = dataclasses.replace(small_config, batch=dataclasses.replace(small_config.batch, evaluate=False))
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    spark.sql(
        "INSERT INTO ratings PARTITION (source, event_date) VALUES "
        "(1, 2, 5, current_timestamp(), 5, 'ratings-0', 'stream', current_date()), "
        "(2, 3, 4, current_timestamp(), 9, 'ratings-0', 'stream', current_date()), "
        "(3, 4, 4, current_timestamp(), 2, 'ratings-1', 'stream', current_date())"
    )
    try:
        first = build_generation(spark, config)
        manifest = artifacts.load_generation(artifacts.open_store(config), first)[2]
        assert manifest["stream_offsets"] == {"ratings-0": 9, "ratings-1": 2}

        def broken_publish(*args, **kwargs):
            raise OSError("artifact store unavailable")

        with monkeypatch.context() as m:
            m.setattr(gen_module.artifacts, "publish_generation", broken_publish)
            with pytest.raises(OSError, match="artifact store unavailable"):
                build_generation(spark, config, generation="20000101T000000000Z")
        assert current_generation(config) == first
        assert artifacts.current_generation(artifacts.open_store(config)) == first
        conn = hbase_connection(config)
        assert not [t for t in conn.tables() if b"20000101T000000000Z" in t]
        conn.close()
        assert spark.sql("SHOW PARTITIONS user_recommendations").count() == 1

        second = build_generation(spark, config)
        third = build_generation(spark, config)
        store = artifacts.open_store(config)
        assert artifacts.list_generations(store) == [second, third]
        assert current_generation(config) == third
        conn = hbase_connection(config)
        names = {t.decode() for t in conn.tables()}
        conn.close()
        assert generation_table(config, first, "users") not in names
        assert generation_table(config, second, "users") in names
        assert {r[0] for r in spark.sql("SHOW PARTITIONS user_recommendations").collect()} == {
            f"generation={second}",
            f"generation={third}",
        }
    finally:
        drop_sandbox(config)
