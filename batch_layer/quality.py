"""Offline quality: one seeded split of a ratings file, two protocols, the same metrics for every method.

The split and the metrics are batch_layer/evaluate.py's, with the [evaluation] settings: of the
readers with at least `min_ratings` ratings, `reader_share` become test readers and as many
validation readers, the rest are training readers.

- Protocol (a), new readers: the batch run's protocol. Test (and validation) readers are left out
  of training entirely; a seeded `fold_fraction` of each one's ratings is folded in, the rest is
  to be predicted.
- Protocol (b), known readers: of each training reader a seeded 1 - `fold_fraction` of the ratings
  is held out of training and predicted from the rest.

One training set (the training readers' kept ratings) serves both protocols, so each method is
fitted once. Books only in held-out ratings are outside the catalog and dropped from them. A
held-out book is relevant when rated `relevant_min_rating` stars or more; readers without one are
not scored. Tuning uses the validation readers only; the test readers are scored once per method.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from batch_layer.evaluate import fold_split, ranking_metrics, sample_readers
from batch_layer.train import collect_factors, fit_als
from readnext.config import Config, EvaluationConfig, ModelConfig
from readnext.foldin import FoldInParams, fold_in, gramian, project, top_n

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Scorer = Callable[["Case"], np.ndarray]
SERIES = re.compile(r"\(([^()]+?),?\s*#\s*[\d.]+\)\s*$")


@dataclass(frozen=True)
class Ratings:
    """Explicit ratings as columns: one (user, item, stars) per row, the latest per pair."""

    users: np.ndarray
    items: np.ndarray
    stars: np.ndarray
    rejected: int = 0


def read_ratings(path: Path, user: str, item: str, rating: str, time: str | None = None) -> Ratings:
    """Read any headed ratings CSV through a column mapping; the latest rating of a pair wins.

    "Latest" is by the time column where there is one, else by position in the file. Rows whose
    user, item or rating do not parse are counted as rejected, never used.
    """
    users, items, stars, times, rejected = [], [], [], [], 0
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        wanted = [c for c in (user, item, rating, time) if c]
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; it has {reader.fieldnames}")
        for row in reader:
            try:
                u, i, r = int(row[user]), int(row[item]), float(row[rating])
                t = float(row[time]) if time else float(len(times))
            except (TypeError, ValueError):
                rejected += 1
                continue
            if not np.isfinite(r):
                rejected += 1
                continue
            users.append(u)
            items.append(i)
            stars.append(r)
            times.append(t)
    u, i, r = np.array(users, dtype=np.int64), np.array(items, dtype=np.int64), np.array(stars, dtype=np.float64)
    newest_first = np.lexsort((-np.arange(len(u)), -np.array(times)))
    _, first = np.unique(np.stack([u[newest_first], i[newest_first]]), axis=1, return_index=True)
    keep = np.sort(newest_first[first])
    return Ratings(u[keep], i[keep], r[keep], rejected)


@dataclass(frozen=True)
class Case:
    """One reader to score: known item rows with their stars, and the relevant held-out item rows."""

    user: int
    known: np.ndarray
    stars: np.ndarray
    relevant: frozenset[int]


@dataclass(frozen=True)
class Split:
    """The training ratings (item rows into `item_ids`) and the readers of each protocol."""

    item_ids: np.ndarray
    train: Ratings
    validation: list[Case]
    test: list[Case]
    known: list[Case]

    def counts(self) -> np.ndarray:
        """Training ratings per catalog item: the popularity every method and metric uses."""
        return np.bincount(self.train.items, minlength=len(self.item_ids)).astype(np.float64)


def split(data: Ratings, seed: int, evaluation: EvaluationConfig) -> Split:
    """The seeded split described in the module docstring."""
    fold_fraction, relevant_min_rating = evaluation.fold_fraction, evaluation.relevant_min_rating
    rng = np.random.default_rng(seed)
    order = np.argsort(data.users, kind="stable")
    readers, starts = np.unique(data.users[order], return_index=True)
    rows_of = dict(zip(readers.tolist(), np.split(order, starts[1:]), strict=True))
    eligible = [u for u in readers.tolist() if len(rows_of[u]) >= evaluation.min_ratings]
    test_readers, validation_readers = (g.tolist() for g in sample_readers(eligible, evaluation, rng, groups=2))
    held_out = set(test_readers) | set(validation_readers)
    train_rows, hidden_of, eligible_set = [], {}, set(eligible)
    for u in readers.tolist():
        if u in held_out:
            continue
        rows = rows_of[u]
        if u in eligible_set:
            rows = rng.permutation(rows)
            n_hidden = int(round(len(rows) * (1 - fold_fraction)))
            hidden_of[u] = (rows[n_hidden:], rows[:n_hidden])
            rows = rows[n_hidden:]
        train_rows.append(rows)
    train_rows = np.sort(np.concatenate(train_rows))
    item_ids = np.unique(data.items[train_rows])
    row_of = {int(b): k for k, b in enumerate(item_ids)}
    train = Ratings(
        data.users[train_rows], np.searchsorted(item_ids, data.items[train_rows]), data.stars[train_rows], data.rejected
    )

    def case(u: int, known_rows: np.ndarray, hidden_rows: np.ndarray) -> Case | None:
        keep = [r for r in known_rows if int(data.items[r]) in row_of]
        relevant = frozenset(
            row_of[int(data.items[r])]
            for r in hidden_rows
            if data.stars[r] >= relevant_min_rating and int(data.items[r]) in row_of
        )
        if not relevant:
            return None
        return Case(u, np.array([row_of[int(data.items[r])] for r in keep], dtype=np.int64), data.stars[keep], relevant)

    def held_out_cases(users: list[int]) -> list[Case]:
        cases = []
        for u in sorted(users):
            known, hidden = fold_split(len(rows_of[u]), evaluation, rng)
            cases.append(case(u, rows_of[u][known], rows_of[u][hidden]))
        return [c for c in cases if c is not None]

    known = [c for u in sorted(hidden_of) if (c := case(u, *hidden_of[u])) is not None]
    if len(known) > evaluation.max_known_readers:
        chosen = rng.choice(len(known), evaluation.max_known_readers, replace=False)
        known = [known[i] for i in np.sort(chosen)]
    return Split(item_ids, train, held_out_cases(validation_readers), held_out_cases(test_readers), known)


def split_for(data: Ratings, config: Config) -> Split:
    """The split with the [evaluation] settings and the model's seed: report and tuning share it."""
    return split(data, config.model.seed, config.evaluation)


def popularity_scorer(split_: Split) -> Scorer:
    """Everyone gets the most-rated books they have not rated."""
    counts = split_.counts()
    return lambda case: counts


def foldin_scorer(item_factors: np.ndarray, params: FoldInParams) -> Scorer:
    """Exact ALS fold-in of the reader's known ratings against fixed item factors (readnext.foldin)."""
    y = np.asarray(item_factors, dtype=np.float64)
    yty = gramian(y) if params.implicit else None
    return lambda case: y @ fold_in(y, case.known, case.stars, params, yty)


def projection_scorer(item_factors: np.ndarray) -> Scorer:
    """The seed project's fold-in: x = r·Y, not a least-squares answer (kept as a baseline)."""
    y = np.asarray(item_factors, dtype=np.float64)
    return lambda case: y @ project(y, case.known, case.stars)


def ease_scorer(split_: Split, lam: float) -> Scorer:
    """EASE (Steck, 2019): a closed-form item-item model on who-rated-what, the strong item baseline."""
    n = len(split_.item_ids)
    users = np.unique(split_.train.users, return_inverse=True)[1]
    gram = np.zeros((n, n), dtype=np.float64)
    for chunk in np.array_split(np.arange(users.max() + 1), max(1, (users.max() + 1) // 4096)):
        rows = np.isin(users, chunk)
        x = np.zeros((len(chunk), n), dtype=np.float32)
        x[users[rows] - chunk[0], split_.train.items[rows]] = 1.0
        gram += x.T @ x
    gram[np.diag_indices(n)] += lam
    p = np.linalg.inv(gram)
    b = p / -np.diag(p)
    b[np.diag_indices(n)] = 0.0
    return lambda case: b[case.known].sum(axis=0)


@dataclass(frozen=True)
class CatalogStats:
    """What the list metrics need to know of each catalog item: popularity percentile and groups."""

    percentile: np.ndarray
    groups: list[list[str]]

    @classmethod
    def build(cls, split_: Split, books: dict[int, tuple[str, str]] | None) -> CatalogStats:
        """`books`: item id → (title, authors); groups are the first author and the series, if known."""
        counts = split_.counts()
        ranks = np.argsort(np.argsort(counts, kind="stable"), kind="stable")
        percentile = 100.0 * ranks / max(len(counts) - 1, 1)
        groups = []
        for item in split_.item_ids.tolist():
            title, authors = (books or {}).get(item, ("", ""))
            found = [f"author:{authors.split(',')[0].strip()}"] if authors else []
            series = SERIES.search(title)
            if series:
                found.append(f"series:{series.group(1).strip()}")
            groups.append(found)
        return cls(percentile, groups)

    def authors(self) -> list[str]:
        return [next((g for g in gs if g.startswith("author:")), "") for gs in self.groups]


def recommend_lists(scorer: Scorer, cases: Sequence[Case], depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(item rows, scores) of each reader's top `depth`, known items excluded."""
    return [top_n(scorer(case), depth, case.known) for case in cases]


def list_metrics(lists: Sequence[np.ndarray], cases: Sequence[Case], catalog: CatalogStats, k: int) -> dict[str, float]:
    """Ranking metrics plus mean popularity percentile and the share of lists dominated by one group.

    A list is dominated when at least half of its k books share one author or one series.
    """
    lists = [np.asarray(items[:k], dtype=np.int64) for items in lists]
    metrics = ranking_metrics(lists, [set(c.relevant) for c in cases], k, len(catalog.percentile))
    shown = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    metrics["popularity_percentile"] = float(catalog.percentile[shown].mean()) if len(shown) else 0.0
    dominated = [
        max(Counter(g for item in items.tolist() for g in catalog.groups[item]).values(), default=0) * 2 >= k
        for items in lists
    ]
    metrics["dominated_share"] = float(np.mean(dominated)) if dominated else 0.0
    return metrics


def als_item_factors(spark: SparkSession, split_: Split, model: ModelConfig, folder: Path) -> np.ndarray:
    """Fit Spark MLlib ALS on the training ratings, as a batch run would; item factors by catalog row.

    The ratings reach Spark as a CSV file in `folder`, so that a large file is not pushed through
    the Python driver row by row.
    """
    from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

    path = folder / "train.csv"
    if not path.exists():
        train = split_.train
        table = np.column_stack([train.users, split_.item_ids[train.items], train.stars])
        np.savetxt(path, table, fmt=["%d", "%d", "%.10g"], delimiter=",")
    schema = StructType(
        [
            StructField("user_id", IntegerType()),
            StructField("book_id", IntegerType()),
            StructField("rating", DoubleType()),
        ]
    )
    fitted = fit_als(spark.read.schema(schema).csv(str(path)), model)
    factors = collect_factors(fitted.itemFactors)
    aligned = np.zeros((len(split_.item_ids), model.rank), dtype=np.float32)
    aligned[np.searchsorted(split_.item_ids, factors.ids)] = factors.vectors
    return aligned
