"""Print what the views serve for a reader, read back from HBase (a check of the batch and speed views)."""

from __future__ import annotations

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.config import Config
from readnext.views import GenerationRecords, GenerationViews, SpeedView


def _listing(titles: dict[int, tuple[str, str]], books: list[int], scores: list[float]) -> list[str]:
    lines = []
    for rank, (book, score) in enumerate(zip(books, scores, strict=True), start=1):
        title, authors = titles.get(book, ("?", "?"))
        lines.append(f"  {rank:2d}. {title} by {authors} (book {book}, score {score:.3f})")
    return lines


def show(config: Config, user_id: int | None, n: int) -> str:
    """The current generation's metrics and a reader's top `n` with titles (the first reader if none given)."""
    generation = artifacts.current_generation(artifacts.open_store(config))
    if not generation:
        return "no current generation: run 'python -m batch_layer run' first"
    conn = hbase_connection(config)
    try:
        tables = GenerationViews(conn, config, generation)
        lines = [f"generation {generation}"]
        for name, values in GenerationRecords(conn, config).metrics(generation).items():
            lines.append(f"  held-out {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "users"))
        user = user_id if user_id is not None else next(iter(tables.reader_ids(limit=1)), None)
        speed = SpeedView(conn, config).reader(user) if user is not None else None
        batch = tables.reader(user) if user is not None else None
        if speed is None and batch is None:
            lines.append(f"reader {user} is in neither the batch nor the speed view")
        if speed is not None:
            books = speed.books[:n].tolist()
            since = f"{len(speed.events)} stream ratings since the generation"
            lines.append(f"speed view: top {len(books)} for reader {user} ({since}):")
            lines.extend(_listing(tables.titles(books), books, speed.scores[:n].tolist()))
        if batch is not None:
            books = batch.books[:n].tolist()
            lines.append(f"batch view: top {len(books)} for reader {user} ({len(batch.history_books)} books rated):")
            lines.extend(_listing(tables.titles(books), books, batch.scores[:n].tolist()))
        return "\n".join(lines)
    finally:
        conn.close()
