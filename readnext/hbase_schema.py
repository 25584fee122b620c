"""HBase layout of the batch and speed views, shared by the layers that write and read them.

Tables (names carry the configured prefix, shown here as `readnext`):

- `readnext_generations`: row `current` → `g:id`, the generation being served; one row per
  generation id → `g:created_at`, `g:data_cutoff` (ISO-8601), `g:metrics`, `g:params` (JSON).
- `readnext_<generation>_users`, row key = user id (decimal): `f:v` user factors; `h:books`,
  `h:ratings` the ratings the generation learnt from; `r:books`, `r:scores` top-N, best first.
- `readnext_<generation>_books`, row key = book id (decimal): `m:*` metadata (title, authors,
  year, average_rating, image_url, small_image_url); `p:count`, `p:mean`, `p:bayes` popularity;
  `f:v` book factors; `s:books`, `s:scores` similar books, best first.
- `readnext_speed`, row key = user id: the speed view (written by the speed layer).

Generation tables are immutable and dropped whole when a generation is pruned. Vectors are
packed big-endian: ids as int32, scores and factors as float32, ratings as int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from readnext.config import Config

CURRENT_ROW = b"current"
FAMILIES = {
    "users": {"f": {"max_versions": 1}, "h": {"max_versions": 1}, "r": {"max_versions": 1}},
    "books": {"m": {"max_versions": 1}, "p": {"max_versions": 1}, "f": {"max_versions": 1}, "s": {"max_versions": 1}},
    "generations": {"g": {"max_versions": 1}},
    "speed": {"v": {"max_versions": 1}},
}


def ensure_table(conn: Any, name: str, kind: str) -> None:
    """Create table `name` with the column families of `kind` if it does not exist."""
    if name.encode() not in conn.tables():
        conn.create_table(name, FAMILIES[kind])


def generations_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_generations"


def speed_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_speed"


def generation_table(config: Config, generation: str, kind: str) -> str:
    """`kind` is 'users' or 'books'."""
    return f"{config.hbase.table_prefix}_{generation}_{kind}"


def row_key(entity_id: int) -> bytes:
    return str(int(entity_id)).encode()


def pack_ids(ids: np.ndarray | list[int]) -> bytes:
    return np.asarray(ids, dtype=">i4").tobytes()


def unpack_ids(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=">i4").astype(np.int64)


def pack_floats(values: np.ndarray | list[float]) -> bytes:
    return np.asarray(values, dtype=">f4").tobytes()


def unpack_floats(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=">f4").astype(np.float64)


def pack_ratings(values: np.ndarray | list[float]) -> bytes:
    return np.asarray(values, dtype=np.int8).tobytes()


def unpack_ratings(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=np.int8).astype(np.float64)
