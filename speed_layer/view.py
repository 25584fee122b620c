"""The speed view: per reader, the stream ratings the current generation lacks, folded in exactly.

Row `<prefix>_speed`/<user id>:
    v:events      JSON [[origin, offset, book, rating, ts_ms], ...], the reader's stream events
                  after the generation's offsets (origin = "<topic>-<partition>")
    v:generation  the generation the row was computed against
    v:vector      float32 reader vector; v:books, v:scores the top-N, best first
    v:last_ts     epoch ms of the newest event; v:updated_ms when the row was written

Lambda merge rule: an event counts in the speed view while its offset is above the current
generation's offset for its partition; once a generation includes it, it counts there instead.
Rows left with no such event are deleted. Applying the same event twice changes nothing (events
are keyed by origin and offset), so replays after a crash are harmless.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from readnext.config import Config
from readnext.events import StreamEvent
from readnext.hbase_schema import (
    ensure_table,
    generation_table,
    pack_floats,
    pack_ids,
    row_key,
    speed_table,
    unpack_ids,
    unpack_ratings,
)
from readnext.merge import merged_history, pending
from readnext.model import ServedModel

log = logging.getLogger("speed_layer")


def ensure_speed_table(conn: Any, config: Config) -> None:
    ensure_table(conn, speed_table(config), "speed")


def update_readers(conn: Any, config: Config, model: ServedModel, new: dict[int, list[StreamEvent]], n: int) -> int:
    """Fold in every reader of `new` again (with all their pending events); returns rows written."""
    speed = conn.table(speed_table(config))
    users_table = conn.table(generation_table(config, model.generation, "users"))
    keys = [row_key(u) for u in new]
    old = dict(speed.rows(keys, columns=[b"v:events"]))
    batch = dict(users_table.rows(keys, columns=[b"h:books", b"h:ratings"]))
    written = 0
    with speed.batch() as out:
        for user, events in new.items():
            key = row_key(user)
            previous = json.loads(old.get(key, {}).get(b"v:events", b"[]"))
            rows = batch.get(key, {})
            written += _write_reader(
                out,
                key,
                model,
                pending(previous + [e.as_row() for e in events], model.stream_offsets),
                unpack_ids(rows.get(b"h:books")),
                unpack_ratings(rows.get(b"h:ratings")),
                n,
            )
    return written


def _write_reader(
    out: Any, key: bytes, model: ServedModel, events: list[list[Any]], books: np.ndarray, ratings: np.ndarray, n: int
) -> int:
    if not events:
        out.delete(key)
        return 0
    history = merged_history(books, ratings, events)
    try:
        vector = model.fold_in(history)
        recs = model.recommend(vector, n, exclude=history)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # this reader's numbers, not the store
        log.exception("reader %s: fold-in failed; the speed row keeps its previous state", key.decode())
        return 0
    out.put(
        key,
        {
            b"v:events": json.dumps(events).encode(),
            b"v:generation": model.generation.encode(),
            b"v:vector": pack_floats(vector),
            b"v:books": pack_ids([b for b, _ in recs]),
            b"v:scores": pack_floats([s for _, s in recs]),
            b"v:last_ts": str(max(int(e[4]) for e in events)).encode(),
            b"v:updated_ms": str(int(time.time() * 1000)).encode(),
        },
    )
    return 1


def rebase(conn: Any, config: Config, model: ServedModel, n: int) -> tuple[int, int]:
    """After a generation flip: recompute rows against the new generation, delete those it absorbed."""
    speed = conn.table(speed_table(config))
    users_table = conn.table(generation_table(config, model.generation, "users"))
    kept = dropped = 0
    stale = [
        (key, json.loads(row.get(b"v:events", b"[]")))
        for key, row in speed.scan(columns=[b"v:events", b"v:generation"])
        if row.get(b"v:generation", b"").decode() != model.generation
    ]
    with speed.batch() as out:
        for key, events in stale:
            rows = users_table.row(key, columns=[b"h:books", b"h:ratings"])
            left = pending(events, model.stream_offsets)
            wrote = _write_reader(
                out, key, model, left, unpack_ids(rows.get(b"h:books")), unpack_ratings(rows.get(b"h:ratings")), n
            )
            kept += wrote
            dropped += 1 - wrote
    return kept, dropped
