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
from collections.abc import Iterable
from typing import Any

import numpy as np

from readnext.config import Config
from readnext.events import StreamEvent
from readnext.merge import merged_history, pending
from readnext.model import ReaderList, ServedModel
from readnext.views import BatchRow, GenerationViews, SpeedRow, SpeedView, SpeedWriter

log = logging.getLogger("speed_layer")


def update_readers(conn: Any, config: Config, model: ServedModel, new: dict[int, list[StreamEvent]], n: int) -> int:
    """Fold in every reader of `new` again (with all their pending events); returns rows written."""
    speed = SpeedView(conn, config)
    old = speed.events(new)
    batch = GenerationViews(conn, config, model.generation).histories(new)
    readers = [
        (user, pending(old.get(user, []) + [e.as_row() for e in events], model.stream_offsets), batch.get(user))
        for user, events in new.items()
    ]
    with speed.writer() as out:
        return _write_readers(out, model, readers, n)


def _write_readers(
    out: SpeedWriter, model: ServedModel, readers: list[tuple[int, list[list[Any]], BatchRow | None]], n: int
) -> int:
    """Write each (reader, pending events, batch row) folded in, or delete a reader left with no events.

    The readers are folded in together (`ServedModel.lists`); if their numbers fail, each is
    tried alone, so that one reader's failure keeps only that reader's previous row.
    """
    for user, events, _ in readers:
        if not events:
            out.delete(user)
    live = [(user, events, _history(events, batch)) for user, events, batch in readers if events]
    try:
        lists = model.lists([history for _, _, history in live], n)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        lists = [_alone(model, user, history, n) for user, _, history in live]
    written = 0
    for (user, events, _), folded in zip(live, lists, strict=True):
        if folded is None:
            continue
        out.put(
            user,
            SpeedRow(
                events=events,
                generation=model.generation,
                vector=np.asarray(folded.vector),
                books=np.array([b for b, _ in folded.ranked], dtype=np.int64),
                scores=np.array([s for _, s in folded.ranked]),
                reasons=np.array(folded.reasons, dtype=np.int64),
                last_ts=max(int(e[4]) for e in events),
                updated_ms=int(time.time() * 1000),
            ),
        )
        written += 1
    return written


def _history(events: list[list[Any]], batch: BatchRow | None) -> dict[int, float]:
    books, ratings = (batch.history_books, batch.history_ratings) if batch else (np.zeros(0), np.zeros(0))
    return merged_history(books, ratings, events)


def _alone(model: ServedModel, user: int, history: dict[int, float], n: int) -> ReaderList | None:
    try:
        return model.lists([history], n)[0]
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # this reader's numbers, not the store
        log.exception("reader %s: fold-in failed; the speed row keeps its previous state", user)
        return None


def rebase(
    conn: Any, config: Config, model: ServedModel, n: int, users: Iterable[int] | None = None
) -> tuple[int, int]:
    """After a generation flip: recompute rows (of `users`, or all) against the new generation, delete those
    it absorbed; (recomputed, deleted). Rows already computed against it are left alone."""
    speed = SpeedView(conn, config)
    stale = speed.not_on(model.generation, users)
    batch = GenerationViews(conn, config, model.generation).histories(user for user, _ in stale)
    readers = [(user, pending(events, model.stream_offsets), batch.get(user)) for user, events in stale]
    with speed.writer() as out:
        kept = _write_readers(out, model, readers, n)
    return kept, len(readers) - kept
