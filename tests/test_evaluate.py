"""Held-out evaluation and the grid search, on small data with real Spark ALS."""

from __future__ import annotations

import dataclasses

import numpy as np

from batch_layer import quality
from batch_layer.evaluate import evaluate_held_out, fold_in_held_out, hold_out_readers, ranking_metrics
from batch_layer.train import collect_factors, fit_als
from batch_layer.tune import grid_search
from readnext.foldin import FoldInParams, fold_in
from tests.data import taste_ratings, write_ratings


def test_ranking_metrics_by_hand():
    recs = [[1, 2, 3], [4, 5, 6]]
    relevant = [{2}, {9}]
    m = ranking_metrics(recs, relevant, k=3, n_items=10)
    assert abs(m["ndcg@3"] - (1 / 1.5849625) / 2) < 1e-6  # a hit at rank 2 for one reader of two
    assert m["recall@3"] == 0.5
    assert m["map@3"] == 0.25
    assert m["coverage"] == 0.6


def test_readers_are_held_out_of_training_whole_seeded_and_capped(spark, config):
    rows = taste_ratings(seed=1, users=60, books=60, per_user=20) + [(999, 1, 5), (999, 2, 4)]
    frame = spark.createDataFrame(rows, "user_id INT, book_id INT, rating INT")
    protocol = dataclasses.replace(config.evaluation, max_readers=100, reader_share=0.1, min_ratings=5)
    train, held = hold_out_readers(frame, protocol, seed=3)
    assert len(held.readers) == 6, "a tenth of the 60 eligible readers"
    assert 999 not in held.readers, "readers with fewer than 5 ratings always train"
    assert not {r.user_id for r in train.select("user_id").distinct().collect()} & set(held.readers)
    assert train.count() + sum(len(b) for b, _ in held.readers.values()) == len(rows)
    assert len(hold_out_readers(frame, dataclasses.replace(protocol, max_readers=3), seed=3)[1].readers) == 3
    assert hold_out_readers(frame, protocol, seed=3)[1].readers.keys() == held.readers.keys(), "seeded"


def test_held_out_readers_are_folded_in_for_the_metrics_and_the_view(spark, config):
    rows = taste_ratings(seed=2, users=160, books=80, per_user=20)
    frame = spark.createDataFrame(rows, "user_id INT, book_id INT, rating INT")
    model_cfg = dataclasses.replace(config.model, feedback="explicit", rank=6, iterations=8, reg=0.1)
    protocol = dataclasses.replace(config.evaluation, max_readers=500, reader_share=0.25)
    train, held = hold_out_readers(frame, protocol, seed=1)
    model = fit_als(train, model_cfg)
    books = collect_factors(model.itemFactors)
    result = evaluate_held_out(held, books, np.ones(len(books.ids)), model_cfg, protocol)
    assert 0.3 < result["als"]["rmse"] < 1.5
    assert "rmse" not in result["popularity"]
    assert 0 < result["als"]["users"] == result["popularity"]["users"] <= len(held.readers) == 40
    served = fold_in_held_out(held, books, model_cfg, n=5)
    user, vector, h_books, _, recs, reasons = served[0]
    assert user == min(held.readers) and len(recs) == 5 and not {b for b, _ in recs} & set(h_books)
    ids, stars = held.readers[user]
    exact = fold_in(books.vectors, [books.row_of()[int(b)] for b in ids], stars, FoldInParams.from_config(model_cfg))
    assert np.allclose(vector, exact, atol=1e-5), "served by the same exact fold-in"
    assert len(reasons) == 5 and set(reasons) <= set(h_books) | {-1}, "each reason is a book the reader rated"


def test_grid_search_scores_every_combination_on_the_validation_readers(spark, config, tmp_path):
    path = write_ratings(tmp_path / "r.csv", taste_ratings(seed=4, users=200, books=80, per_user=20))
    small = dataclasses.replace(config, model=dataclasses.replace(config.model, iterations=5))
    result = grid_search(spark, small, quality.read_ratings(path, "user_id", "book_id", "rating"), {"rank": [2, 8]})
    assert [r["rank"] for r in result["grid"]] == [2, 8]
    best = max(result["grid"], key=lambda r: r["ndcg@10"])
    assert result["best"] == {"rank": best["rank"]}
    assert result["validation_readers"] == len(
        quality.split_for(quality.read_ratings(path, "user_id", "book_id", "rating"), small).validation
    )
    assert 0 < best["ndcg@10"] <= 1
