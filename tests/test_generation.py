"""A batch run publishes a complete generation to Hive, HBase and the artifact store, or nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from batch_layer import generation as gen_module
from batch_layer.generation import build_generation
from batch_layer.ingest import DataFiles, ingest
from batch_layer.show import show
from deploy.init import init
from readnext import artifacts
from readnext.accounts import Tokens
from readnext.clients import hbase_connection
from readnext.model import ServedModel
from readnext.views import HIVE_VIEWS, GenerationRecords, GenerationViews, generation_table
from serving_layer.app import create_app
from tests.conftest import drop_sandbox
from tests.data import taste_ratings, write_books, write_ratings
from tests.readers import Readers


@pytest.fixture
def small_config(config, tmp_path, unique_name):
    """Fast model settings, and HBase tables and artifacts of the test's own."""
    return dataclasses.replace(
        config,
        hbase=dataclasses.replace(config.hbase, table_prefix=unique_name),
        artifacts=dataclasses.replace(config.artifacts, uri=str(tmp_path / "artifacts")),
        model=dataclasses.replace(config.model, rank=8, iterations=8, reg=0.05, alpha=5.0),
        batch=dataclasses.replace(config.batch, top_n=10, similar_k=5, keep_generations=2),
        evaluation=dataclasses.replace(config.evaluation, max_readers=500),
    )


@pytest.fixture
def master(spark, hive_db, tmp_path):
    """The ratings imported (and one row the import refuses: a rating of 9)."""
    rows = taste_ratings(seed=11)
    ratings = write_ratings(tmp_path / "r.csv", [*rows, (1, 1, 9)])
    ingest(spark, DataFiles(ratings=ratings, books=write_books(tmp_path / "b.csv")))
    return rows


def test_generation_is_complete_everywhere_and_beats_popularity(stack, spark, master, small_config):
    config = small_config
    try:
        generation = build_generation(spark, config)
        store = artifacts.open_store(config)
        assert artifacts.current_generation(store) == generation
        ids, factors, manifest = artifacts.load_generation(store, generation)
        assert factors.shape == (150, 8) and sorted(ids.tolist()) == list(range(1, 151))
        metrics = manifest["metrics"]
        assert metrics["als"]["ndcg@10"] > metrics["popularity"]["ndcg@10"]
        assert manifest["blas"].startswith("dev.ludovic.netlib.blas."), "the manifest says which BLAS trained it"
        assert manifest["counts"] == {"ratings": len(master), "users": 240, "books": 150, "rejected": 1}
        assert 0 < manifest["training_s"] < 600
        assert manifest["data_cutoff"] is not None

        for table in HIVE_VIEWS:
            partitions = [r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]
            assert partitions == [f"generation={generation}"], table
        stored = json.loads(spark.table("generations").where(f"generation = '{generation}'").first().metrics)
        assert stored == metrics

        known = {}
        for user, book, rating in master:
            known.setdefault(user, {})[book] = rating
        conn = hbase_connection(config)
        tables = GenerationViews(conn, config, generation)
        assert len(tables.reader_ids()) == 240
        row = tables.reader(7)
        recs = row.books
        assert len(recs) == 10 and not set(recs.tolist()) & set(known[7])
        assert np.all(np.diff(row.scores) <= 1e-6), "best first"
        assert row.history() == known[7]
        row_of = {int(b): k for k, b in enumerate(ids)}
        expected = np.asarray(factors, dtype=np.float64) @ row.features
        assert np.allclose([expected[row_of[b]] for b in recs], row.scores, rtol=1e-4, atol=1e-5)
        model = ServedModel.build(generation, ids, factors, manifest)
        for user in tables.reader_ids():  # trained readers and held-out readers folded in alike
            stored = tables.reader(user)
            books = stored.books.tolist()
            assert stored.reason_of() == dict(zip(books, model.reasons(stored.history(), books), strict=True)), user
        assert set(row.reason_of().values()) <= set(known[7]) | {-1} and set(row.reason_of().values()) - {-1}
        book = {b.book_id: b for b in tables.books()}[3]
        assert book.title == 'Book 3, "genre 3"'
        assert book.ratings_count == sum(1 for _, b, _ in master if b == 3)
        assert len(book.similar) == 5 and 3 not in [b for b, _ in book.similar]
        assert GenerationRecords(conn, config).metrics(generation) == metrics
        conn.close()
        shown = show(config, 7, 3)
        assert shown.startswith(f"generation {generation}")
        assert "top 3 for reader 7 (30 books rated)" in shown and f"(book {recs[0]}," in shown
    finally:
        drop_sandbox(config)


def _fails_after(original, what: str):
    def broken(*args, **kwargs):
        original(*args, **kwargs)
        raise OSError(f"injected failure after {what}")

    return broken


def _fails_before(what: str):
    def broken(*args, **kwargs):
        raise OSError(f"injected failure at {what}")

    return broken


FAILURES = {
    "after the Hive write": lambda m: m.setattr(
        gen_module, "write_hive_views", _fails_after(gen_module.write_hive_views, "the Hive write")
    ),
    "after the HBase write": lambda m: m.setattr(
        gen_module.views, "write_hbase_books", _fails_after(gen_module.views.write_hbase_books, "the HBase write")
    ),
    "after the artifacts": lambda m: m.setattr(
        gen_module.artifacts,
        "publish_generation",
        _fails_after(gen_module.artifacts.publish_generation, "the artifacts"),
    ),
    "after the records": lambda m: m.setattr(
        gen_module, "_record_generation", _fails_after(gen_module._record_generation, "the records")
    ),
    "at the flip": lambda m: m.setattr(gen_module.artifacts, "set_current", _fails_before("the flip")),
}


def _footprint(config) -> tuple[int, int]:
    """(HBase tables of the sandbox, files in its artifact store)."""
    conn = hbase_connection(config)
    try:
        tables = sum(t.decode().startswith(config.hbase.table_prefix + "_") for t in conn.tables())
    finally:
        conn.close()
    return tables, sum(1 for p in Path(config.artifacts.uri).rglob("*") if p.is_file())


def _names_of(spark, conn, config, generation: str) -> list[str]:
    """Every place that still names `generation`: HBase tables and records, Hive partitions and history, artifacts."""
    found = [t.decode() for t in conn.tables() if generation.encode() in t]
    if generation in GenerationRecords(conn, config).generations():
        found.append("HBase generations record")
    for table in HIVE_VIEWS:
        if f"generation={generation}" in [r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]:
            found.append(f"Hive partition of {table}")
    if spark.table("generations").where(f"generation = '{generation}'").count():
        found.append("Hive generations row")
    if generation in artifacts.list_generations(artifacts.open_store(config)):
        found.append("artifact store")
    return found


def test_a_failure_at_any_publishing_step_leaves_the_previous_generation_serving(
    stack, spark, master, small_config, monkeypatch
):
    config = dataclasses.replace(small_config, batch=dataclasses.replace(small_config.batch, evaluate=False))
    init(config)
    client = create_app(config).test_client()
    conn = hbase_connection(config)
    reader = {"Authorization": f"Bearer {Tokens(conn, config).issue_reader(7)}"}
    conn.close()
    try:
        first = build_generation(spark, config)
        for k, (step, inject) in enumerate(FAILURES.items()):
            failed = f"2000010{k + 1}T000000000Z"
            with monkeypatch.context() as m:
                inject(m)
                with pytest.raises(OSError, match="injected failure"):
                    build_generation(spark, config, generation=failed)
            assert artifacts.current_generation(artifacts.open_store(config)) == first, step
            conn = hbase_connection(config)
            try:
                assert _names_of(spark, conn, config, failed) == [], step
                assert _names_of(spark, conn, config, first) == [
                    generation_table(config, first, "books"),
                    generation_table(config, first, "users"),
                    "HBase generations record",
                    *[f"Hive partition of {t}" for t in HIVE_VIEWS],
                    "Hive generations row",
                    "artifact store",
                ], step
            finally:
                conn.close()
            answer = client.get("/api/v1/users/7/recommendations?n=3", headers=reader)
            assert answer.status_code == 200 and answer.json["generation"] == first, step
            assert answer.json["source"] == "batch", step
    finally:
        drop_sandbox(config)


def test_old_generations_are_pruned_everywhere_while_readers_are_served(stack, spark, master, small_config):
    config = dataclasses.replace(
        small_config,
        batch=dataclasses.replace(small_config.batch, evaluate=False),
        serving=dataclasses.replace(small_config.serving, refresh_s=0.2),
    )
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    spark.sql(
        "INSERT INTO ratings PARTITION (source, event_date) VALUES "
        "(1, 2, 5, current_timestamp(), 5, 'ratings-0', NULL, 'stream', current_date()), "
        "(2, 3, 4, current_timestamp(), 9, 'ratings-0', NULL, 'stream', current_date()), "
        "(3, 4, 4, current_timestamp(), 2, 'ratings-1', NULL, 'stream', current_date())"
    )
    init(config)
    conn = hbase_connection(config)
    reader = {"Authorization": f"Bearer {Tokens(conn, config).issue_reader(7)}"}
    conn.close()
    try:
        first = build_generation(spark, config)
        manifest = artifacts.load_generation(artifacts.open_store(config), first)[2]
        assert manifest["stream_offsets"] == {"ratings-0": 9, "ratings-1": 2}
        with Readers(create_app(config), reader, threads=2) as answers:
            second = build_generation(spark, config)
            held_at_two = _footprint(config)
            third = build_generation(spark, config)  # prunes the first while it may still be read
            answers.until(lambda answer: answer[1] == third)
        assert _footprint(config) == held_at_two, "what is kept levels off at keep_generations"
        assert answers.failures == [], "every answer during the flips is a 200"
        for seen in answers.by_thread:  # one generation per answer, and never an older one after a newer
            order = [g for k, g in enumerate(seen) if k == 0 or seen[k - 1] != g]
            assert order in ([first, second, third], [first, third]), order
        store = artifacts.open_store(config)
        assert artifacts.list_generations(store) == [second, third]
        assert artifacts.current_generation(store) == third
        conn = hbase_connection(config)
        try:
            pruned = _names_of(spark, conn, config, first)
            assert GenerationRecords(conn, config).generations() == [second, third]
        finally:
            conn.close()
        assert pruned == ["Hive generations row"], "a pruned generation stays in Hive's history only"
        assert {r[0] for r in spark.sql("SHOW PARTITIONS user_recommendations").collect()} == {
            f"generation={second}",
            f"generation={third}",
        }
    finally:
        drop_sandbox(config)
