"""Read side of the views in HBase: the current generation, a reader's batch and speed rows, book metadata.

The serving layer and the command-line checks read the views only through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from readnext.config import Config
from readnext.hbase_schema import (
    CURRENT_ROW,
    generation_table,
    generations_table,
    row_key,
    speed_table,
    unpack_floats,
    unpack_ids,
)


@dataclass(frozen=True)
class ReaderView:
    """What a view holds for one reader: top-N (ids, scores) and where it came from."""

    source: str
    generation: str
    books: np.ndarray
    scores: np.ndarray
    rated: int


class ViewReader:
    def __init__(self, config: Config, conn: Any) -> None:
        self.config, self.conn = config, conn

    def current_generation(self) -> str | None:
        tables = self.conn.tables()
        if generations_table(self.config).encode() not in tables:
            return None
        value = self.conn.table(generations_table(self.config)).row(CURRENT_ROW).get(b"g:id")
        return value.decode() if value else None

    def generation_metrics(self, generation: str) -> dict[str, Any]:
        row = self.conn.table(generations_table(self.config)).row(generation.encode())
        return json.loads(row.get(b"g:metrics") or b"{}")

    def batch_reader(self, generation: str, user_id: int) -> ReaderView | None:
        row = self.conn.table(generation_table(self.config, generation, "users")).row(row_key(user_id))
        if not row:
            return None
        return ReaderView(
            "batch",
            generation,
            unpack_ids(row[b"r:books"]),
            unpack_floats(row[b"r:scores"]),
            len(unpack_ids(row[b"h:books"])),
        )

    def speed_reader(self, user_id: int) -> ReaderView | None:
        if speed_table(self.config).encode() not in self.conn.tables():
            return None
        row = self.conn.table(speed_table(self.config)).row(row_key(user_id))
        if not row:
            return None
        return ReaderView(
            "speed",
            row[b"v:generation"].decode(),
            unpack_ids(row[b"v:books"]),
            unpack_floats(row[b"v:scores"]),
            len(json.loads(row[b"v:events"])),
        )

    def titles(self, generation: str, book_ids: list[int]) -> dict[int, tuple[str, str]]:
        """(title, authors) by book id."""
        table = self.conn.table(generation_table(self.config, generation, "books"))
        rows = table.rows([row_key(b) for b in book_ids], columns=[b"m:title", b"m:authors"])
        return {int(k): (v.get(b"m:title", b"?").decode(), v.get(b"m:authors", b"?").decode()) for k, v in rows}

    def first_reader(self, generation: str) -> int | None:
        table = self.conn.table(generation_table(self.config, generation, "users"))
        key = next((k for k, _ in table.scan(limit=1, filter=b"KeyOnlyFilter()")), None)
        return int(key) if key else None
