"""Answers for a reader: the merge of the speed and batch views, re-ranking controls and reasons."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from readnext import rerank as controls
from readnext.foldin import explain
from readnext.merge import merged_history, pending
from readnext.views import SpeedRow, ranked
from serving_layer.state import Snapshot


@dataclass
class ReaderState:
    """A reader as the views know them: which view answers, their vector, ratings, top-N and its stored reasons."""

    source: str
    vector: np.ndarray | None
    history: dict[int, float]
    ranked: list[tuple[int, float]]
    reasons: Mapping[int, int] = field(default_factory=dict)


def reader_state(
    hbase: Callable[[Callable[[Any], Any]], Any], snap: Snapshot, user_id: int, depth: int, speed: SpeedRow | None
) -> ReaderState:
    """Merge rule: the speed view when it holds events the generation lacks, else the batch view.

    `hbase(work)` runs a read on a pooled connection; a remembered batch row needs none. `speed`
    is the reader's speed row (`SpeedReaders.row`).
    """
    model = snap.model
    batch = snap.batch_rows.reader(hbase, user_id)
    events = pending(speed.events, model.stream_offsets) if speed else []
    if events:
        known = (batch.history_books, batch.history_ratings) if batch else (np.zeros(0), np.zeros(0))
        history = merged_history(*known, events)
        if speed.generation == model.generation and len(speed.books) >= depth:
            return ReaderState("speed", speed.vector, history, ranked(speed.books, speed.scores), speed.reason_of())
        folded = model.lists([history], depth)[0]
        return ReaderState("speed", folded.vector, history, folded.ranked, folded.reason_of())
    if batch:
        history = batch.history()
        if len(batch.books) >= depth:
            return ReaderState("batch", batch.features, history, ranked(batch.books, batch.scores), batch.reason_of())
        return ReaderState("batch", batch.features, history, model.recommend(batch.features, depth, history))
    return ReaderState("popular", None, {}, [(b, 0.0) for b in snap.catalog.popular[:depth]])


def rerank(
    snap: Snapshot, ranked: list[tuple[int, float]], penalty: float, max_per_author: int, limit: int | None = None
) -> list[tuple[int, float]]:
    """Popularity penalty on the scores, then at most `max_per_author` books of one author; the first `limit`."""
    if not ranked or (penalty <= 0 and max_per_author <= 0):
        return ranked[:limit]
    books, scores = np.array(ranked).T
    books = books.astype(np.int64)
    ids, scores = controls.rerank(
        books,
        scores,
        snap.catalog.popularity(books),
        snap.catalog.authors(books).tolist(),
        penalty,
        max_per_author,
        limit,
    )
    return list(zip(ids.tolist(), scores.tolist(), strict=True))


def contributions(snap: Snapshot, history: dict[int, float], book_id: int) -> list[tuple[int, float]]:
    """Each rated book's exact share of the predicted preference for `book_id`, largest first."""
    model = snap.model
    known = [b for b in history if b in model.row_of]
    if not known or book_id not in model.row_of:
        return []
    rows = np.array([model.row_of[b] for b in known])
    parts = explain(
        model.factors, rows, np.array([history[b] for b in known]), model.params, model.row_of[book_id], model.yty
    )
    return sorted(zip(known, parts.tolist(), strict=True), key=lambda x: -x[1])


def reasons(
    snap: Snapshot, history: dict[int, float], book_ids: list[int], stored: Mapping[int, int]
) -> dict[int, str | None]:
    """'because you rated X' per book: the views' stored reasons, and one solve for any book they lack."""
    missing = [b for b in book_ids if b not in stored]
    reason_of = (
        {**stored, **dict(zip(missing, snap.model.reasons(history, missing), strict=True))} if missing else stored
    )
    out: dict[int, str | None] = {}
    for book_id in book_ids:
        top = snap.catalog.books.get(reason_of[book_id])
        out[book_id] = f"because you rated {top.title}" if top else None
    return out
