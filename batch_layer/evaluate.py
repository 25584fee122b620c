"""Held-out evaluation of a generation: ranking metrics for ALS and for the popularity baseline.

Protocol: per reader holdout. Of each reader with at least `eval_min_ratings` ratings a seeded
random `holdout_fraction` is held out; the model is trained on the rest. For up to `eval_users`
readers (seeded sample) the top `eval_k` books, excluding the reader's training books, are
compared with the held-out books rated `relevant_min_rating` stars or more.

NDCG@k uses binary relevance; Recall@k is hits / min(k, relevant); MAP@k averages precision at
each hit over min(k, relevant); catalog coverage is the share of books recommended to anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from batch_layer.train import Factors
from readnext.config import BatchConfig
from readnext.foldin import recommend, top_n

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame


def split_per_user(ratings: DataFrame, fraction: float, min_ratings: int, seed: int) -> tuple[DataFrame, DataFrame]:
    """(train, test): a seeded random `fraction` of each eligible reader's ratings goes to test."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_user = Window.partitionBy("user_id")
    shuffled = Window.partitionBy("user_id").orderBy(F.rand(seed), "book_id")
    marked = (
        ratings.withColumn("_n", F.count("*").over(by_user))
        .withColumn("_i", F.row_number().over(shuffled))
        .withColumn("_test", (F.col("_n") >= min_ratings) & (F.col("_i") <= F.round(F.col("_n") * fraction)))
        .cache()
    )
    cols = ratings.columns
    return marked.where(~F.col("_test")).select(*cols), marked.where(F.col("_test")).select(*cols)


def ranking_metrics(recommended: Sequence[np.ndarray], relevant: Sequence[set[int]], k: int, n_items: int) -> dict:
    """NDCG@k, Recall@k, MAP@k over readers, and catalog coverage of all the lists."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, recall, ap = [], [], []
    shown: set[int] = set()
    for recs, rel in zip(recommended, relevant, strict=True):
        recs = list(recs[:k])
        shown.update(int(b) for b in recs)
        hits = np.array([int(b) in rel for b in recs], dtype=float)
        best = min(k, len(rel))
        ndcg.append(float(hits @ discounts[: len(hits)]) / float(discounts[:best].sum()))
        recall.append(hits.sum() / best)
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1) if len(hits) else np.zeros(0)
        ap.append(float((precision_at * hits).sum()) / best)
    return {
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
        f"recall@{k}": float(np.mean(recall)) if recall else 0.0,
        f"map@{k}": float(np.mean(ap)) if ap else 0.0,
        "coverage": len(shown) / n_items if n_items else 0.0,
        "users": len(ndcg),
    }


def evaluate(
    train: DataFrame,
    test: DataFrame,
    model: ALSModel,
    users: Factors,
    books: Factors,
    batch: BatchConfig,
    seed: int,
    implicit: bool,
) -> dict[str, dict]:
    """Metrics of the ALS model and of the popularity baseline on the held-out readers."""
    from pyspark.sql import functions as F

    relevant_rows = test.where(F.col("rating") >= batch.relevant_min_rating).select("user_id", "book_id")
    candidates = sorted({r.user_id for r in relevant_rows.select("user_id").distinct().collect()})
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(candidates, size=min(batch.eval_users, len(candidates)), replace=False).tolist())
    chosen = train.sparkSession.createDataFrame([(int(u),) for u in sample], "user_id INT")
    relevant: dict[int, set[int]] = {}
    for r in relevant_rows.join(F.broadcast(chosen), "user_id").collect():
        relevant.setdefault(r.user_id, set()).add(r.book_id)
    known: dict[int, list[int]] = {}
    for r in train.select("user_id", "book_id").join(F.broadcast(chosen), "user_id").collect():
        known.setdefault(r.user_id, []).append(r.book_id)

    row_of, user_row = books.row_of(), users.row_of()
    counts = {r.book_id: r["count"] for r in train.groupBy("book_id").count().collect()}
    popularity = np.array([counts.get(int(b), 0) for b in books.ids], dtype=float)
    k = batch.eval_k
    als_lists, pop_lists, rel_lists = [], [], []
    for user in sample:
        exclude = np.array([row_of[b] for b in known.get(user, []) if b in row_of], dtype=np.int64)
        if user in user_row:
            idx, _ = recommend(users.vectors[user_row[user]], books.vectors, k, exclude)
        else:
            idx = np.zeros(0, dtype=np.int64)
        als_lists.append(books.ids[idx])
        pop_lists.append(books.ids[top_n(popularity, k, exclude)[0]])
        rel_lists.append(relevant[user])
    n_items = len(books.ids)
    results = {
        "als": ranking_metrics(als_lists, rel_lists, k, n_items),
        "popularity": ranking_metrics(pop_lists, rel_lists, k, n_items),
    }
    if not implicit:
        from pyspark.ml.evaluation import RegressionEvaluator

        predicted = model.transform(test.withColumn("value", F.col("rating").cast("float")))
        results["als"]["rmse"] = RegressionEvaluator(
            metricName="rmse", labelCol="value", predictionCol="prediction"
        ).evaluate(predicted)
    return results
