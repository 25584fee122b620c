"""The quality report: the split's guarantees, the metrics, the baselines and the report files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from batch_layer import quality
from batch_layer.report import build_report, choose_controls, read_books, write_report
from readnext.rerank import rerank
from tests.data import taste_ratings, write_books, write_ratings


@pytest.fixture(scope="module")
def taste(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    rows = taste_ratings(seed=5, users=300, books=120, per_user=25)
    return write_ratings(folder / "ratings.csv", rows), write_books(folder / "books.csv", books=120)


def test_read_ratings_maps_columns_keeps_the_latest_and_counts_rejects(tmp_path):
    path = write_ratings(
        tmp_path / "other.csv",
        [("a", 1, 10, 5, 200), ("b", 1, 10, 2, 100), ("c", 2, 10, "x", 1), ("d", 2, 11, 3.5, 1)],
        header=("row", "reader", "item", "stars", "when"),
    )
    data = quality.read_ratings(path, "reader", "item", "stars", "when")
    assert sorted(zip(data.users.tolist(), data.items.tolist(), data.stars.tolist(), strict=True)) == [
        (1, 10, 5.0),
        (2, 11, 3.5),
    ]
    assert data.rejected == 1
    in_file_order = quality.read_ratings(path, "reader", "item", "stars")
    assert dict(zip(in_file_order.users.tolist(), in_file_order.stars.tolist(), strict=True))[1] == 2.0
    with pytest.raises(ValueError, match="missing column"):
        quality.read_ratings(path, "user_id", "item", "stars")


def test_split_keeps_held_out_readers_out_of_training_and_hides_their_test_books(taste, config):
    data = quality.read_ratings(taste[0], "user_id", "book_id", "rating")
    protocol = dataclasses.replace(config.evaluation, reader_share=0.1, fold_fraction=0.8, relevant_min_rating=4)
    split = quality.split(data, seed=3, evaluation=protocol)
    trained = set(split.train.users.tolist())
    held_out = {c.user for c in split.test} | {c.user for c in split.validation}
    assert held_out and not held_out & trained
    assert not {c.user for c in split.test} & {c.user for c in split.validation}
    stars = {(u, i): r for u, i, r in zip(data.users.tolist(), data.items.tolist(), data.stars.tolist(), strict=True)}
    train_pairs = set(zip(split.train.users.tolist(), split.item_ids[split.train.items].tolist(), strict=True))
    for case in split.test + split.known:
        known = set(split.item_ids[case.known].tolist())
        relevant = set(split.item_ids[list(case.relevant)].tolist())
        assert not known & relevant
        assert all(stars[(case.user, b)] >= 4 for b in relevant)
        if case.user in trained:
            assert not {(case.user, b) for b in relevant} & train_pairs
    again = quality.split(data, seed=3, evaluation=protocol)
    assert [c.user for c in again.test] == [c.user for c in split.test]


def test_list_metrics_and_dominated_lists():
    train = quality.Ratings(np.zeros(3, int), np.array([0, 0, 1]), np.ones(3))
    split = quality.Split(np.arange(6), train, [], [], [])
    books = {0: ("A (Saga, #1)", "X"), 1: ("B (Saga, #2)", "Y"), 2: ("C", "Z"), 3: ("D", "W"), 4: ("E", "V")}
    catalog = quality.CatalogStats.build(split, books)
    assert catalog.percentile[0] == 100.0 and catalog.groups[0] == ["author:X", "series:Saga"]
    case = quality.Case(9, np.zeros(0, int), np.zeros(0), frozenset({1}))
    metrics = quality.list_metrics([np.array([0, 1])], [case], catalog, k=2)
    assert metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert metrics["recall@2"] == 1.0 and metrics["map@2"] == 0.5
    assert metrics["coverage"] == pytest.approx(2 / 6)
    assert quality.list_metrics([np.array([0, 1, 2, 3])], [case], catalog, k=4)["dominated_share"] == 1.0
    assert quality.list_metrics([np.array([0, 2, 3, 4])], [case], catalog, k=4)["dominated_share"] == 0.0


def test_rerank_penalises_popularity_and_limits_authors():
    ids, scores = rerank(
        np.array([1, 2, 3]), np.array([1.0, 0.9, 0.5]), np.array([1.0, 0.0, 0.0]), ["a", "a", "a"], 0.2, 0
    )
    assert ids.tolist() == [2, 1, 3] and scores[0] == pytest.approx(0.9)
    ids, _ = rerank(np.array([1, 2, 3, 4, 5]), np.linspace(1, 0, 5), np.zeros(5), ["a", "a", "b", "", ""], 0.0, 1)
    assert ids.tolist() == [1, 3, 4, 5]


def test_rerank_with_a_limit_is_the_prefix_of_the_whole_list():
    rng = np.random.default_rng(3)
    ids, scores, popularity = np.arange(1, 41), rng.random(40), rng.random(40)
    groups = rng.integers(0, 6, 40).tolist()  # 0: unknown author
    for penalty, per_author in ((0.3, 2), (0.0, 1), (0.5, 0), (0.0, 0)):
        whole = rerank(ids, scores, popularity, groups, penalty, per_author)
        for limit in (0, 1, 7, 40, 60):
            part = rerank(ids, scores, popularity, groups, penalty, per_author, limit=limit)
            assert part[0].tolist() == whole[0][:limit].tolist()
            assert part[1].tolist() == whole[1][:limit].tolist()


def test_choose_controls_takes_the_widest_coverage_close_to_the_best_without_dominated_lists():
    def row(ndcg, coverage, dominated, penalty):
        return {"ndcg@10": ndcg, "coverage": coverage, "dominated_share": dominated, "popularity_penalty": penalty}

    rows = [row(0.30, 0.1, 0.0, 0.0), row(0.297, 0.2, 0.0, 0.1), row(0.299, 0.3, 0.2, 0.2), row(0.25, 0.5, 0.0, 0.5)]
    assert choose_controls(rows, 10)["popularity_penalty"] == 0.1
    assert choose_controls([r for r in rows if r["dominated_share"]], 10)["popularity_penalty"] == 0.2


def test_ease_beats_popularity_on_taste_data(taste, config):
    data = quality.read_ratings(taste[0], "user_id", "book_id", "rating")
    protocol = dataclasses.replace(config.evaluation, reader_share=0.15, relevant_min_rating=4)
    split = quality.split(data, seed=1, evaluation=protocol)
    catalog = quality.CatalogStats.build(split, None)

    def ndcg(scorer):
        lists = [ids for ids, _ in quality.recommend_lists(scorer, split.test, 10)]
        return quality.list_metrics(lists, split.test, catalog, 10)["ndcg@10"]

    assert ndcg(quality.ease_scorer(split, 10.0)) > 1.5 * ndcg(quality.popularity_scorer(split))


def test_report_compares_every_method_and_writes_its_files(spark, config, taste, tmp_path):
    model = dataclasses.replace(config.model, rank=8, iterations=5)
    small = dataclasses.replace(config, model=model, quality=dataclasses.replace(config.quality, ease_lambda=10.0))
    data = quality.read_ratings(taste[0], "user_id", "book_id", "rating")
    report = build_report(spark, small, data, read_books(taste[1], "book_id"), [4, 8], [model.reg, 1.0], "taste")
    methods = report["methods"]
    assert len(methods) == 5
    ndcg = {name: m["a_new_readers"]["ndcg@10"] for name, m in methods.items()}
    default = ndcg["implicit ALS + exact fold-in (default)"]
    assert all(0 <= v <= 1 for v in ndcg.values()) and default > 2 * ndcg["popularity"]
    assert {(r["rank"], r["reg"]) for r in report["sweep"]} == {(4, model.reg), (8, model.reg), (8, 1.0)}
    assert len(report["controls"]) == 24 and set(report["chosen_controls"]) == {"popularity_penalty", "max_per_author"}
    path = write_report(report, tmp_path / "report")
    text = path.read_text()
    assert "## (a) New readers" in text and "seed: explicit ALS + projection" in text
    assert f"reaches {default / ndcg['seed: explicit ALS + projection']:,.0f}× the seed" in text
    assert json.loads((tmp_path / "report" / "quality.json").read_text())["methods"].keys() == methods.keys()
    for png in ("quality_vs_settings.png", "popularity.png", "controls.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
