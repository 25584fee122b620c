"""The speed view's upkeep: per reader, the stream ratings the current generation lacks, folded in exactly.

Each row also stores its top-N's reasons, so serving the reader does no linear algebra.

The rows are `readnext.views.SpeedRow`s (layout in readnext/views.py). Lambda merge rule: an event
counts in the speed view while its offset is above the current generation's offset for its
partition; once a generation includes it, it counts there instead. Rows left with no such event
are deleted. Applying the same event twice changes nothing (events are keyed by origin and
offset), so replays after a crash are harmless.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from readnext.config import Config
from readnext.events import StreamEvent
from readnext.merge import merged_history, pending
from readnext.model import ServedModel
from readnext.views import BatchRow, GenerationViews, SpeedRow, SpeedView, SpeedWriter

log = logging.getLogger("speed_layer")


def update_readers(conn: Any, config: Config, model: ServedModel, new: dict[int, list[StreamEvent]], n: int) -> int:
    """Fold in every reader of `new` again (with all their pending events); returns rows written."""
    speed = SpeedView(conn, config)
    old = speed.events(new)
    batch = GenerationViews(conn, config, model.generation).histories(new)
    written = 0
    with speed.writer() as out:
        for user, events in new.items():
            previous = old.get(user, [])
            written += _write_reader(
                out,
                user,
                model,
                pending(previous + [e.as_row() for e in events], model.stream_offsets),
                batch.get(user),
                n,
            )
    return written


def _write_reader(
    out: SpeedWriter, user: int, model: ServedModel, events: list[list[Any]], batch: BatchRow | None, n: int
) -> int:
    if not events:
        out.delete(user)
        return 0
    books, ratings = (batch.history_books, batch.history_ratings) if batch else (np.zeros(0), np.zeros(0))
    history = merged_history(books, ratings, events)
    try:
        vector = model.fold_in(history)
        recs = model.recommend(vector, n, exclude=history)
        reasons = model.reasons(history, [b for b, _ in recs])
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # this reader's numbers, not the store
        log.exception("reader %s: fold-in failed; the speed row keeps its previous state", user)
        return 0
    out.put(
        user,
        SpeedRow(
            events=events,
            generation=model.generation,
            vector=np.asarray(vector),
            books=np.array([b for b, _ in recs], dtype=np.int64),
            scores=np.array([s for _, s in recs]),
            reasons=np.array(reasons, dtype=np.int64),
            last_ts=max(int(e[4]) for e in events),
            updated_ms=int(time.time() * 1000),
        ),
    )
    return 1


def rebase(conn: Any, config: Config, model: ServedModel, n: int) -> tuple[int, int]:
    """After a generation flip: recompute rows against the new generation, delete those it absorbed."""
    speed = SpeedView(conn, config)
    stale = speed.not_on(model.generation)
    batch = GenerationViews(conn, config, model.generation).histories(user for user, _ in stale)
    kept = dropped = 0
    with speed.writer() as out:
        for user, events in stale:
            wrote = _write_reader(out, user, model, pending(events, model.stream_offsets), batch.get(user), n)
            kept += wrote
            dropped += 1 - wrote
    return kept, dropped
