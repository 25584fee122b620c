"""Print what the current generation serves for a reader, read back from HBase (a check of the views)."""

from __future__ import annotations

import json

from readnext.clients import hbase_connection
from readnext.config import Config
from readnext.hbase_schema import CURRENT_ROW, generation_table, generations_table, row_key, unpack_floats, unpack_ids


def show(config: Config, user_id: int | None, n: int) -> str:
    """The current generation's metrics and a reader's top `n` with titles (the first reader if none given)."""
    conn = hbase_connection(config)
    try:
        meta = conn.table(generations_table(config))
        current = meta.row(CURRENT_ROW).get(b"g:id")
        if not current:
            return "no current generation: run 'python -m batch_layer run' first"
        generation = current.decode()
        metrics = json.loads(meta.row(current).get(b"g:metrics") or b"{}")
        users = conn.table(generation_table(config, generation, "users"))
        if user_id is None:
            key, row = next(users.scan(limit=1), (None, {}))
        else:
            key, row = row_key(user_id), users.row(row_key(user_id))
        lines = [f"generation {generation}"]
        for name, values in metrics.items():
            lines.append(f"  held-out {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "users"))
        if not row:
            lines.append(f"reader {user_id} is not in this generation")
            return "\n".join(lines)
        books = conn.table(generation_table(config, generation, "books"))
        ids = unpack_ids(row[b"r:books"])[:n]
        scores = unpack_floats(row[b"r:scores"])[:n]
        lines.append(f"top {len(ids)} for reader {key.decode()} ({len(unpack_ids(row[b'h:books']))} books rated):")
        titles = books.rows([row_key(b) for b in ids], columns=[b"m:title", b"m:authors"])
        meta_of = {int(k): v for k, v in titles}
        for rank, (book, score) in enumerate(zip(ids, scores, strict=True), start=1):
            m = meta_of.get(int(book), {})
            title, authors = m.get(b"m:title", b"?").decode(), m.get(b"m:authors", b"?").decode()
            lines.append(f"  {rank:2d}. {title} by {authors} (book {book}, score {score:.3f})")
        return "\n".join(lines)
    finally:
        conn.close()
