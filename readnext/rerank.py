"""Popularity-bias and diversity controls on a ranked list, shared by serving and the quality report.

Scores lose `penalty` × the book's popularity (log(1 + ratings count) scaled to 0..1), so that a
penalty of 0.1 demotes the most popular book by 0.1 of an implicit-ALS preference; then at most
`max_per_group` books of one group (author) are kept, in order; books of no known group are
never limited.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def scaled_popularity(counts: np.ndarray, largest: float) -> np.ndarray:
    """log(1 + count) / log(1 + largest count): 0 for unknown books, 1 for the most popular."""
    return np.log1p(np.asarray(counts, dtype=np.float64)) / np.log1p(max(largest, 1.0))


def rerank(
    ids: np.ndarray,
    scores: np.ndarray,
    popularity: np.ndarray,
    groups: Sequence[Hashable],
    penalty: float,
    max_per_group: int,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) re-ordered by score - penalty·popularity, at most `max_per_group` per group.

    A falsy group ("" or 0) is unknown and never limited. With `limit`, only the first `limit`
    books of that list are returned: a page needs no more, and the walk stops there.
    """
    ids, scores = np.asarray(ids), np.asarray(scores, dtype=np.float64)
    order = np.arange(len(ids))
    if penalty > 0 and len(ids):
        scores = scores - penalty * np.asarray(popularity, dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
    if max_per_group > 0:
        seen: dict[Hashable, int] = {}
        kept: list[int] = []
        for i in order.tolist():
            if limit is not None and len(kept) >= limit:
                break
            group = groups[i]
            if not group:  # author unknown: nothing to limit
                kept.append(i)
            elif seen.get(group, 0) < max_per_group:
                seen[group] = seen.get(group, 0) + 1
                kept.append(i)
        order = np.array(kept, dtype=np.int64)
    elif limit is not None:
        order = order[:limit]
    return ids[order], scores[order]
