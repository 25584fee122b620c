"""The Lambda merge rule, shared by the speed layer (which writes it) and the serving layer (which applies it).

A stream event counts while its Kafka offset is above the current generation's mark for its
partition; a reader's ratings are the generation's history with those events applied in time
order, a re-rating replacing the earlier rating.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def pending(events: Iterable[list[Any]], offsets: dict[str, int]) -> list[list[Any]]:
    """Events `[origin, offset, book, rating, ts_ms]` the generation with `offsets` lacks, deduplicated, in order."""
    unique = {(e[0], int(e[1])): e for e in events}
    kept = [e for (origin, offset), e in unique.items() if offset > offsets.get(origin, -1)]
    return sorted(kept, key=lambda e: (e[4], e[0], e[1]))


def merged_history(batch_books: np.ndarray, batch_ratings: np.ndarray, events: list[list[Any]]) -> dict[int, float]:
    """The reader's ratings: the generation's history, then stream events in time order (a re-rating wins)."""
    history = {int(b): float(r) for b, r in zip(batch_books, batch_ratings, strict=True)}
    for event in events:
        history[int(event[2])] = float(event[3])
    return history
