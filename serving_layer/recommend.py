"""Answers for a reader: the merge of the speed and batch views, re-ranking controls and reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from readnext import rerank as controls
from readnext.config import Config
from readnext.foldin import explain
from readnext.merge import merged_history, pending
from readnext.views import GenerationViews, SpeedView, ranked
from serving_layer.state import Snapshot


@dataclass
class ReaderState:
    """A reader as the views know them: which view answers, their vector, ratings and top-N."""

    source: str
    vector: np.ndarray | None
    history: dict[int, float]
    ranked: list[tuple[int, float]]


def reader_state(conn: Any, config: Config, snap: Snapshot, user_id: int, depth: int) -> ReaderState:
    """Merge rule: the speed view when it holds events the generation lacks, else the batch view."""
    model = snap.model
    batch = GenerationViews(conn, config, model.generation).reader(user_id)
    speed = SpeedView(conn, config).reader(user_id)
    events = pending(speed.events, model.stream_offsets) if speed else []
    if events:
        known = (batch.history_books, batch.history_ratings) if batch else (np.zeros(0), np.zeros(0))
        history = merged_history(*known, events)
        if speed.generation == model.generation and len(speed.books) >= depth:
            return ReaderState("speed", speed.vector, history, ranked(speed.books, speed.scores))
        vector = model.fold_in(history)
        return ReaderState("speed", vector, history, model.recommend(vector, depth, history))
    if batch:
        history = batch.history()
        if len(batch.books) >= depth:
            top = ranked(batch.books, batch.scores)
        else:
            top = model.recommend(batch.features, depth, history)
        return ReaderState("batch", batch.features, history, top)
    return ReaderState("popular", None, {}, [(b, 0.0) for b in snap.catalog.popular[:depth]])


def rerank(
    snap: Snapshot, ranked: list[tuple[int, float]], penalty: float, max_per_author: int
) -> list[tuple[int, float]]:
    """Popularity penalty on the scores, then at most `max_per_author` books of one author."""
    if not ranked or (penalty <= 0 and max_per_author <= 0):
        return ranked
    ids = np.array([b for b, _ in ranked])
    ids, scores = controls.rerank(
        ids,
        np.array([s for _, s in ranked]),
        snap.catalog.popularity(ids),
        [snap.catalog.author(int(b)) for b in ids],
        penalty,
        max_per_author,
    )
    return list(zip(ids.tolist(), scores.tolist(), strict=True))


def contributions(snap: Snapshot, history: dict[int, float], book_id: int) -> list[tuple[int, float]]:
    """Each rated book's exact share of the predicted preference for `book_id`, largest first."""
    known, parts = _contributions(snap, history, [book_id])
    if not len(parts):
        return []
    return sorted(zip(known, parts[0].tolist(), strict=True), key=lambda x: -x[1])


def _contributions(snap: Snapshot, history: dict[int, float], book_ids: list[int]) -> tuple[list[int], np.ndarray]:
    """(rated books, contributions: one row per book of `book_ids`, zeros for a book the model lacks)."""
    model = snap.model
    known = [b for b in history if b in model.row_of]
    if not known or not book_ids:
        return known, np.zeros((0, len(known)))
    rows = np.array([model.row_of[b] for b in known])
    targets = np.array([model.row_of.get(b, -1) for b in book_ids])
    parts = explain(
        model.factors,
        rows,
        np.array([history[b] for b in known]),
        model.params,
        np.maximum(targets, 0),
        model.yty,
    )
    parts[targets < 0] = 0.0
    return known, parts


def reasons(snap: Snapshot, history: dict[int, float], book_ids: list[int]) -> dict[int, str | None]:
    """'because you rated X' per book, X the rated book that adds most to it (one solve for all)."""
    known, parts = _contributions(snap, history, book_ids)
    out: dict[int, str | None] = dict.fromkeys(book_ids)
    if not len(parts):
        return out
    best = parts.argmax(axis=1)
    for book_id, row, j in zip(book_ids, parts, best, strict=True):
        top = snap.catalog.books.get(known[j]) if row[j] > 0 else None
        out[book_id] = f"because you rated {top.title}" if top else None
    return out
