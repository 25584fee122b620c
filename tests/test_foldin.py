"""Exact fold-in: it solves the ALS least-squares step, and it reproduces Spark's own user factors."""

from __future__ import annotations

import numpy as np
import pytest

from readnext.foldin import FoldInParams, explain, fold_in, fold_in_many, project, recommend, strongest, top_n


def _synthetic_ratings(seed: int, users: int = 120, items: int = 90, per_user: int = 25) -> list[tuple[int, int, int]]:
    """Ratings with low-rank structure plus noise, so ALS has something real to fit."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    rows = []
    for user in range(users):
        for item in rng.choice(items, size=per_user, replace=False):
            stars = int(np.clip(np.rint(3 + u[user] @ v[item] + rng.normal(scale=0.5)), 1, 5))
            rows.append((user, int(item), stars))
    return rows


def test_explicit_fold_in_zeroes_the_gradient_of_the_als_objective():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 6)).astype(np.float32)
    items, r = np.array([3, 7, 8, 20, 33]), np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    reg = 0.3
    x = fold_in(y, items, r, FoldInParams(reg=reg, implicit=False))
    yi = y[items].astype(np.float64)
    gradient = yi.T @ (yi @ x - r) + reg * len(items) * x
    assert np.abs(gradient).max() < 1e-9
    assert not np.allclose(x, project(y, items, r)), "the seed's projection is not the least-squares answer"


def test_implicit_fold_in_zeroes_the_gradient_of_the_weighted_objective():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(30, 4))
    items, r = np.array([1, 2, 5, 9]), np.array([3.0, 1.0, -1.0, 2.0])
    params = FoldInParams(reg=0.1, implicit=True, alpha=2.0)
    x = fold_in(y, items, r, params)
    p = np.zeros(30)
    p[items] = (r > 0).astype(float)
    c = np.ones(30)
    c[items] += params.alpha * np.abs(r)
    gradient = y.T @ (c * (y @ x - p)) + params.reg * 3 * x
    assert np.abs(gradient).max() < 1e-9


def test_reader_without_positive_preferences_gets_zero_vector():
    y = np.eye(3)
    params = FoldInParams(reg=0.1, implicit=True, alpha=1.0)
    assert np.array_equal(fold_in(y, np.array([0]), np.array([-2.0]), params), np.zeros(3))
    assert fold_in_many(y, [], params).shape == (0, 3)


def test_top_n_excludes_known_items_and_orders_by_score():
    scores = np.array([0.1, 0.9, 0.5, 0.9, -0.2, 0.7])
    idx, best = top_n(scores, 3, exclude=np.array([1]))
    assert idx.tolist() == [3, 5, 2]
    assert best.tolist() == [0.9, 0.7, 0.5]
    assert top_n(scores, 10, exclude=np.arange(6))[0].size == 0
    idx, _ = recommend(np.array([1.0, 0.0]), np.array([[0.2, 1], [0.9, 0], [0.5, 3]]), 2, exclude=np.array([1]))
    assert idx.tolist() == [2, 0]


@pytest.mark.parametrize(
    ("implicit", "offset"),
    [(False, 0), (True, 0), (True, 3)],
    ids=["explicit", "implicit", "implicit-with-negative-preferences"],
)
def test_fold_in_reproduces_spark_user_factors(spark, implicit, offset):
    from pyspark.ml.recommendation import ALS

    rows = _synthetic_ratings(seed=7)
    frame = spark.createDataFrame([(u, i, float(r - offset)) for u, i, r in rows], "user INT, item INT, rating FLOAT")
    params = FoldInParams(reg=0.05, implicit=implicit, alpha=4.0, rating_offset=offset)
    model = ALS(
        rank=6,
        maxIter=6,
        regParam=params.reg,
        implicitPrefs=implicit,
        alpha=params.alpha,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=3,
    ).fit(frame)
    item_ids, item_vecs = zip(*[(r.id, r.features) for r in model.itemFactors.collect()], strict=True)
    row_of = {item: k for k, item in enumerate(item_ids)}
    y = np.array(item_vecs, dtype=np.float32)
    spark_users = {r.id: np.array(r.features, dtype=np.float64) for r in model.userFactors.collect()}
    histories: dict[int, list[tuple[int, float]]] = {}
    for u, i, r in rows:
        histories.setdefault(u, []).append((row_of[i], r))
    users = sorted(histories)
    ours = fold_in_many(
        y, [(np.array([i for i, _ in histories[u]]), np.array([r for _, r in histories[u]])) for u in users], params
    )
    worst = max(
        np.linalg.norm(ours[k] - spark_users[u]) / np.linalg.norm(spark_users[u])
        for k, u in enumerate(users)
        if np.linalg.norm(spark_users[u]) > 0
    )
    print(f"largest relative error against Spark's user factors: {worst:.2e}")
    assert worst <= 1e-4, f"largest relative error {worst:.2e}"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_explanations_sum_to_the_score(implicit):
    rng = np.random.default_rng(9)
    y = rng.normal(size=(25, 5))
    items, stars = np.array([2, 4, 11, 19]), np.array([5.0, 2.0, 4.0, 1.0])
    params = FoldInParams(reg=0.2, implicit=implicit, alpha=1.5, rating_offset=3.0 if implicit else 0.0)
    x = fold_in(y, items, stars, params)
    for target in (0, 7, 24):
        parts = explain(y, items, stars, params, target)
        assert parts.shape == (4,)
        assert np.isclose(parts.sum(), y[target] @ x)
    together = explain(y, items, stars, params, np.array([0, 7, 24]))
    assert np.allclose(together, [explain(y, items, stars, params, t) for t in (0, 7, 24)])
    if implicit:
        assert np.all(explain(y, items, stars, params, 7)[stars <= 3] == 0), "negative preferences explain nothing"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_the_strongest_reason_is_the_largest_positive_share_of_the_score(implicit):
    rng = np.random.default_rng(11)
    y = rng.normal(size=(40, 6))
    params = FoldInParams(reg=0.1, implicit=implicit, alpha=2.0)
    targets = np.arange(10, 40)

    one = strongest(y, np.array([3]), np.array([5.0]), params, targets)
    score = y[targets] @ fold_in(y, np.array([3]), np.array([5.0]), params)
    assert np.array_equal(one, np.where(score > 0, 0, -1)), "a single rated book explains exactly the positive scores"
    assert 0 < (one == 0).sum() < len(targets)

    items, stars = np.array([1, 4, 7, 9]), np.array([5.0, 1.0, 4.0, 3.0])
    best = strongest(y, items, stars, params, targets)
    shares = explain(y, items, stars, params, targets)  # they add up to the score (test above)
    for k in range(len(targets)):
        if best[k] < 0:
            assert shares[k].max() <= 0
        else:
            assert shares[k, best[k]] == shares[k].max() > 0
    assert (best >= 0).any() and np.array_equal(
        strongest(y, np.zeros(0, dtype=int), np.zeros(0), params, targets), np.full(len(targets), -1)
    )
