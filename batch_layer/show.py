"""Print what the views serve for a reader, read back from HBase (a check of the batch and speed views)."""

from __future__ import annotations

from readnext.clients import hbase_connection
from readnext.config import Config
from readnext.view_reader import ReaderView, ViewReader


def _listing(reader: ViewReader, view: ReaderView, user: int, n: int) -> list[str]:
    ids = [int(b) for b in view.books[:n]]
    titles = reader.titles(view.generation, ids)
    what = "books rated" if view.source == "batch" else "stream ratings since the generation"
    lines = [f"{view.source} view: top {len(ids)} for reader {user} ({view.rated} {what}):"]
    for rank, (book, score) in enumerate(zip(ids, view.scores[:n], strict=True), start=1):
        title, authors = titles.get(book, ("?", "?"))
        lines.append(f"  {rank:2d}. {title} by {authors} (book {book}, score {score:.3f})")
    return lines


def show(config: Config, user_id: int | None, n: int) -> str:
    """The current generation's metrics and a reader's top `n` with titles (the first reader if none given)."""
    conn = hbase_connection(config)
    try:
        reader = ViewReader(config, conn)
        generation = reader.current_generation()
        if not generation:
            return "no current generation: run 'python -m batch_layer run' first"
        lines = [f"generation {generation}"]
        for name, values in reader.generation_metrics(generation).items():
            lines.append(f"  held-out {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "users"))
        user = user_id if user_id is not None else reader.first_reader(generation)
        views = [v for v in (reader.speed_reader(user), reader.batch_reader(generation, user)) if v is not None]
        if not views:
            lines.append(f"reader {user} is in neither the batch nor the speed view")
        for view in views:
            lines.extend(_listing(reader, view, user, n))
        return "\n".join(lines)
    finally:
        conn.close()
