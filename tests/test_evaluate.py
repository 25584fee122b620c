"""Held-out evaluation and the grid search, on small data with real Spark ALS."""

from __future__ import annotations

import dataclasses

from batch_layer import quality
from batch_layer.evaluate import evaluate, ranking_metrics, split_per_user
from batch_layer.train import collect_factors, fit_als
from batch_layer.tune import grid_search
from tests.data import taste_ratings, write_ratings


def test_ranking_metrics_by_hand():
    recs = [[1, 2, 3], [4, 5, 6]]
    relevant = [{2}, {9}]
    m = ranking_metrics(recs, relevant, k=3, n_items=10)
    assert abs(m["ndcg@3"] - (1 / 1.5849625) / 2) < 1e-6  # a hit at rank 2 for one reader of two
    assert m["recall@3"] == 0.5
    assert m["map@3"] == 0.25
    assert m["coverage"] == 0.6


def test_split_holds_out_a_share_of_each_eligible_reader(spark):
    rows = taste_ratings(seed=1, users=40, books=60, per_user=20) + [(999, 1, 5), (999, 2, 4)]
    frame = spark.createDataFrame(rows, "user_id INT, book_id INT, rating INT")
    train, test = split_per_user(frame, 0.2, 5, seed=3)
    held = test.groupBy("user_id").count().collect()
    assert {r.user_id for r in held} == set(range(1, 41)), "readers with fewer than 5 ratings keep all of them"
    assert all(r["count"] == 4 for r in held)
    assert train.count() + test.count() == len(rows)
    again = split_per_user(frame, 0.2, 5, seed=3)[1]
    assert sorted(map(tuple, again.collect())) == sorted(map(tuple, test.collect())), "seeded"


def test_explicit_model_reports_rmse(spark, config):
    rows = taste_ratings(seed=2, users=120, books=80, per_user=20)
    frame = spark.createDataFrame(rows, "user_id INT, book_id INT, rating INT")
    model_cfg = dataclasses.replace(config.model, feedback="explicit", rank=6, iterations=8, reg=0.1)
    train, test = split_per_user(frame, 0.2, 5, seed=1)
    model = fit_als(train, model_cfg)
    batch = dataclasses.replace(config.batch, eval_users=500)
    result = evaluate(
        train, test, model, collect_factors(model.userFactors), collect_factors(model.itemFactors), batch, 1, False
    )
    assert 0.3 < result["als"]["rmse"] < 1.5
    assert "rmse" not in result["popularity"]
    assert 0 < result["als"]["users"] == result["popularity"]["users"] <= 120, "readers with a liked held-out book"


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
