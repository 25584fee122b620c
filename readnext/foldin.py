"""Exact ALS fold-in and top-N scoring: the model math every layer shares.

Folding a reader in is one half-step of ALS with the book factors Y held fixed, solved exactly as
Spark MLlib's `ALS.computeFactors` solves it (normal equations accumulated in float64, L2
regularisation scaled by the reader's number of ratings):

- explicit: (Σ y yᵀ + λ·n·I) x = Σ r·y, over the n rated books;
- implicit: (YᵀY + Σ c·y yᵀ + λ·n⁺·I) x = Σ_{r>0} (1 + c)·y with c = α·|r|, over every rated
  book, n⁺ counting the positive ones (Hu, Koren and Volinsky, with Spark's extension to r ≤ 0).

The seed project's projection (x = r·Y) is kept, as `project`, only as a named evaluation baseline:
ALS factors are not orthonormal, so it is not the least-squares answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from readnext.config import ModelConfig


@dataclass(frozen=True)
class FoldInParams:
    """The ALS settings the book factors were trained with; fold-in must use the same ones.

    For implicit feedback ALS learns from (stars - rating_offset), so that low stars can be
    negative preferences; fold-in takes stars and applies the same offset.
    """

    reg: float
    implicit: bool
    alpha: float = 1.0
    rating_offset: float = 0.0

    @classmethod
    def from_config(cls, model: ModelConfig) -> FoldInParams:
        return cls(reg=model.reg, implicit=model.implicit, alpha=model.alpha, rating_offset=model.rating_offset)

    def values(self, stars: np.ndarray) -> np.ndarray:
        """The values ALS trains on for these star ratings."""
        stars = np.asarray(stars, dtype=np.float64)
        return stars - self.rating_offset if self.implicit else stars


def gramian(item_factors: np.ndarray) -> np.ndarray:
    """YᵀY in float64: computed once per generation and reused for every implicit fold-in."""
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def fold_in(
    item_factors: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    params: FoldInParams,
    yty: np.ndarray | None = None,
) -> np.ndarray:
    """The least-squares user vector for star `ratings` of the rows `items` of `item_factors`.

    Returns zeros for a reader with nothing to learn from (no ratings, or, for implicit feedback,
    no positive preference), as Spark does.
    """
    items = np.asarray(items, dtype=np.int64)
    a, weights, n = _normal_equations(item_factors, items, ratings, params, yty)
    if n == 0:
        return np.zeros(item_factors.shape[1], dtype=np.float64)
    y = np.asarray(item_factors[items], dtype=np.float64)
    return _solve_spd(a, y.T @ weights)


def _normal_equations(
    item_factors: np.ndarray, items: np.ndarray, ratings: np.ndarray, params: FoldInParams, yty: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(A + λnI, the weight of each rated item in b = Σ w·y, n) of one reader's least-squares step."""
    r = params.values(ratings)
    rank = item_factors.shape[1]
    y = np.asarray(item_factors[items], dtype=np.float64)
    if params.implicit:
        c1 = params.alpha * np.abs(r)
        n = int(np.count_nonzero(r > 0))
        z = y * np.sqrt(c1)[:, None]  # Σ c·y yᵀ = zᵀz: numpy multiplies a matrix by its own transpose in half the work
        a = (yty if yty is not None else gramian(item_factors)) + z.T @ z
        weights = np.where(r > 0, 1.0 + c1, 0.0)
    else:
        n = len(items)
        a = y.T @ y
        weights = r
    a[np.diag_indices(rank)] += params.reg * n
    return a, weights, n


@dataclass(frozen=True)
class Step:
    """One reader's least-squares step kept whole: the vector and B = A⁻¹Yᵤᵀ over the rated items.

    x = A⁻¹ Σ_j w_j y_j = B w, and y_tᵀx = Σ_j (y_tᵀ B_j) w_j exactly (Hu, Koren and Volinsky, §5),
    so one factorisation of A gives the vector and the exact parts of any score: a list and its
    reasons without a second solve.
    """

    vector: np.ndarray
    basis: np.ndarray
    weights: np.ndarray

    def parts(self, item_factors: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per target row, each rated item's share of its score (the shares sum to the score)."""
        y_t = np.asarray(item_factors[np.asarray(targets, dtype=np.int64)], dtype=np.float64)
        return (y_t @ self.basis) * self.weights

    def strongest(self, item_factors: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per target row, the position of the rated item that adds most to its score; -1 where none adds."""
        if not self.basis.shape[1] or not len(targets):
            return np.full(len(targets), -1, dtype=np.int64)
        parts = self.parts(item_factors, targets)
        best = parts.argmax(axis=1)
        return np.where(parts[np.arange(len(best)), best] > 0, best, -1)


def step(
    item_factors: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    params: FoldInParams,
    yty: np.ndarray | None = None,
) -> Step:
    """The reader's `Step`: `fold_in`'s vector, with what its scores' reasons need."""
    items = np.asarray(items, dtype=np.int64)
    a, weights, n = _normal_equations(item_factors, items, ratings, params, yty)
    if n == 0:
        return Step(np.zeros(item_factors.shape[1]), np.zeros((item_factors.shape[1], len(items))), weights)
    basis = _solve_spd(a, np.asarray(item_factors[items], dtype=np.float64).T)
    return Step(basis @ weights, basis, weights)


def explain(
    item_factors: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    params: FoldInParams,
    target: int | np.ndarray,
    yty: np.ndarray | None = None,
) -> np.ndarray:
    """How much each rated item contributes to the reader's predicted preference for row `target`.

    One row of contributions per target when `target` is an array; they sum to the score.
    """
    parts = step(item_factors, items, ratings, params, yty).parts(item_factors, np.atleast_1d(target))
    return parts if np.ndim(target) else parts[0]


def strongest(
    item_factors: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    params: FoldInParams,
    targets: np.ndarray,
    yty: np.ndarray | None = None,
) -> np.ndarray:
    """Per target row, the position in `items` of the rated item that adds most to its score; -1 where none adds.

    The reason a list gives ("because you rated X"), computed once where the list is made (the
    batch and speed views store it) rather than on every request.
    """
    return step(item_factors, items, ratings, params, yty).strongest(item_factors, np.asarray(targets, dtype=np.int64))


def _solve_spd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve the (symmetric positive definite) normal equations, by least squares if singular.

    One LU solve: as exact as Spark's Cholesky for these well-conditioned systems and, without
    a triangular solver in numpy, cheaper than Cholesky followed by two general solves.
    """
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def fold_in_many(
    item_factors: np.ndarray,
    histories: Iterable[tuple[np.ndarray, np.ndarray]],
    params: FoldInParams,
) -> np.ndarray:
    """Fold in several readers, each given as (item rows, ratings); one row of factors per reader."""
    yty = gramian(item_factors) if params.implicit else None
    rows = [fold_in(item_factors, items, ratings, params, yty) for items, ratings in histories]
    return np.vstack(rows) if rows else np.zeros((0, item_factors.shape[1]))


def project(item_factors: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """The seed project's fold-in (rating vector × item factors): an evaluation baseline only."""
    return np.asarray(ratings, dtype=np.float64) @ np.asarray(item_factors[np.asarray(items)], dtype=np.float64)


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the `n` best entries of `scores`, best first, never one in `exclude`."""
    scores = np.array(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    part = np.argpartition(-scores, n - 1)[:n]
    order = part[np.lexsort((part, -scores[part]))]
    return order, scores[order]


def scores(user_vectors: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """Predicted preference xᵀy of each reader (a row of `user_vectors`) for every item, multiplied in float32.

    Spark's `ALSModel.recommendForAll` scores in float32 too: the factors are float32 as ALS
    learnt them, and the product reads half the memory a float64 one reads (the 10,000 × 128
    factors are 5 MB, not 10). Pass float32 factors: others are converted on every call.
    """
    factors = np.asarray(item_factors, dtype=np.float32)
    return np.asarray(user_vectors, dtype=np.float32) @ factors.T


def recommend(
    user_vector: np.ndarray, item_factors: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-N item rows for one reader by predicted preference xᵀy, known items excluded."""
    return top_n(scores(user_vector, item_factors), n, exclude)
