"""The one evaluation protocol and metrics: the batch run's check, the quality report and `tune` use it.

Protocol (settings in [evaluation]): of the readers with at least `min_ratings` ratings a seeded
`reader_share` (`max_readers` at most) is left out of training altogether; the model is trained
on everyone else (Oryx publishes the model built on its training split the same way). A seeded
`fold_fraction` of each held-out reader's ratings is folded in exactly against the trained book
factors (readnext.foldin, the speed and serving layers' fold-in); the top `k` books, the folded-in
ones excluded, are compared with the hidden books rated `relevant_min_rating` stars or more
(1: every book the reader went on to rate). A batch run then serves the held-out readers from
their whole history folded in, as the speed layer serves a new reader.

NDCG@k uses binary relevance; Recall@k is hits / min(k, relevant); MAP@k averages precision at
each hit over min(k, relevant); catalog coverage is the share of books recommended to anyone.
For explicit feedback RMSE is taken over the hidden ratings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from batch_layer.train import Factors
from readnext.config import EvaluationConfig, ModelConfig
from readnext.foldin import FoldInParams, fold_in, gramian, recommend, strongest, top_n

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class HeldOut:
    """Readers left out of training: per reader, the book ids and stars of all their ratings."""

    readers: dict[int, tuple[np.ndarray, np.ndarray]]


def sample_readers(
    eligible: np.ndarray, evaluation: EvaluationConfig, rng: np.random.Generator, groups: int = 1
) -> list[np.ndarray]:
    """`groups` disjoint seeded samples of `reader_share` of the eligible readers each (`max_readers` at most)."""
    eligible = np.array(eligible, dtype=np.int64)
    rng.shuffle(eligible)
    n = min(evaluation.max_readers, int(round(len(eligible) * evaluation.reader_share)))
    return [eligible[g * n : (g + 1) * n] for g in range(groups)]


def fold_split(n_ratings: int, evaluation: EvaluationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(folded-in, hidden) positions of a held-out reader's ratings."""
    order = rng.permutation(n_ratings)
    n_known = int(round(n_ratings * evaluation.fold_fraction))
    return order[:n_known], order[n_known:]


def hold_out_readers(ratings: DataFrame, evaluation: EvaluationConfig, seed: int) -> tuple[DataFrame, HeldOut]:
    """(the training ratings, the held-out readers): the protocol's readers leave training."""
    from pyspark.sql import functions as F

    counts = ratings.groupBy("user_id").count().where(F.col("count") >= evaluation.min_ratings)
    eligible = sorted(r.user_id for r in counts.collect())
    chosen = np.sort(sample_readers(np.array(eligible), evaluation, np.random.default_rng(seed))[0])
    spark = ratings.sparkSession
    chosen_frame = F.broadcast(spark.createDataFrame([(int(u),) for u in chosen], "user_id INT"))
    readers: dict[int, tuple[list[int], list[int]]] = {}
    for r in ratings.join(chosen_frame, "user_id").select("user_id", "book_id", "rating").collect():
        books, stars = readers.setdefault(r.user_id, ([], []))
        books.append(r.book_id)
        stars.append(r.rating)
    held = HeldOut({u: (np.array(b, dtype=np.int64), np.array(s, dtype=np.float64)) for u, (b, s) in readers.items()})
    return ratings.join(chosen_frame, "user_id", "left_anti"), held


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


def evaluate_held_out(
    held: HeldOut, books: Factors, counts: np.ndarray, model: ModelConfig, evaluation: EvaluationConfig
) -> dict[str, dict]:
    """Metrics of the ALS model (held-out readers folded in) and of the popularity baseline (`counts` per book row)."""
    rng = np.random.default_rng(model.seed)
    params = FoldInParams.from_config(model)
    vectors = np.asarray(books.vectors, dtype=np.float32)
    yty = gramian(vectors) if params.implicit else None
    row_of = books.row_of()
    k = evaluation.k
    als_lists, pop_lists, rel_lists, errors = [], [], [], []
    for user in sorted(held.readers):
        ids, stars = held.readers[user]
        known, hidden = fold_split(len(ids), evaluation, rng)
        known = np.array([i for i in known if int(ids[i]) in row_of], dtype=np.int64)
        rows = np.array([row_of[int(ids[i])] for i in known], dtype=np.int64)
        threshold = evaluation.relevant_min_rating
        relevant = {int(ids[i]) for i in hidden if stars[i] >= threshold and int(ids[i]) in row_of}
        x = fold_in(vectors, rows, stars[known], params, yty)
        if not params.implicit:
            scored = [i for i in hidden if int(ids[i]) in row_of]
            errors.extend(vectors[[row_of[int(ids[i])] for i in scored]] @ x - stars[scored])
        if not relevant:
            continue
        als_lists.append(books.ids[recommend(x, vectors, k, rows)[0]])
        pop_lists.append(books.ids[top_n(counts, k, rows)[0]])
        rel_lists.append(relevant)
    n_items = len(books.ids)
    results = {
        "als": ranking_metrics(als_lists, rel_lists, k, n_items),
        "popularity": ranking_metrics(pop_lists, rel_lists, k, n_items),
    }
    if errors:
        results["als"]["rmse"] = float(np.sqrt(np.mean(np.square(errors))))
    return results


def fold_in_held_out(held: HeldOut, books: Factors, model: ModelConfig, n: int) -> list[tuple]:
    """Rows of the user_recommendations view for the held-out readers: whole history folded in, top `n` with reasons."""
    params = FoldInParams.from_config(model)
    vectors = np.asarray(books.vectors, dtype=np.float32)
    yty = gramian(vectors) if params.implicit else None
    row_of = books.row_of()
    out = []
    for user in sorted(held.readers):
        ids, stars = held.readers[user]
        keep = np.array([int(b) in row_of for b in ids], dtype=bool)
        rows = np.array([row_of[int(b)] for b in ids[keep]], dtype=np.int64)
        x = fold_in(vectors, rows, stars[keep], params, yty)
        idx, scores = recommend(x, vectors, n, rows)
        recs = [(int(books.ids[i]), float(s)) for i, s in zip(idx, scores, strict=True)]
        rated = ids[keep]
        why = strongest(vectors, rows, stars[keep], params, idx, yty)
        reasons = [int(rated[j]) if j >= 0 else -1 for j in why.tolist()]
        out.append((int(user), x.astype(np.float32).tolist(), ids.tolist(), stars.astype(int).tolist(), recs, reasons))
    return out
