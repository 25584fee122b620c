"""The views in HBase: their layout, typed row codecs, reads and writes. No other module names a column.

Tables (names carry the configured prefix, shown here as `readnext`):

- `readnext_<generation>_users`, row key = user id (decimal), a `BatchRow`: `f:v` reader
  factors; `h:books`, `h:ratings` the ratings the generation learnt from; `r:books`, `r:scores`
  top-N, best first; `r:reasons` per top-N book the rated book that adds most to it (-1: none).
- `readnext_<generation>_books`, row key = book id, a `BookRow`: `m:*` metadata (title, authors,
  year, average_rating, image_url, small_image_url); `p:count`, `p:mean`, `p:bayes` popularity;
  `f:v` book factors; `s:books`, `s:scores` similar books, best first.
- `readnext_speed`, row key = user id, a `SpeedRow` (written by the speed layer): `v:events`
  JSON [[origin, offset, book, rating, ts_ms], ...], the reader's stream events after the
  generation's offsets; `v:generation` the generation it was computed against; `v:vector`;
  `v:books`, `v:scores` top-N; `v:reasons` as `r:reasons`; `v:last_ts` newest event; `v:updated_ms` when it was written.
- `readnext_generations`, row key = generation id: `g:created_at`, `g:data_cutoff`,
  `g:stream_offsets`, `g:metrics`, `g:params` (JSON), a record of every published generation.
  Which generation is served is not here: the artifact store's CURRENT is the one pointer
  (readnext/artifacts.py), flipped last by a batch run.

Generation tables are immutable and dropped whole when a generation is pruned. Vectors are
packed big-endian: ids as int32, scores and factors as float32, ratings as int8.

The same views are kept in Hive (`HIVE_VIEWS`, layout hive/batch_views.sql), one partition per
generation, for analysts and for rebuilding HBase; `write_hive_views` and `drop_hive_views` own them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from readnext.config import Config

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

HIVE_VIEWS = (
    "book_factors",
    "user_factors",
    "user_recommendations",
    "similar_books",
    "book_popularity",
    "book_metadata",
)


def family(**options: Any) -> dict[str, Any]:
    """A column family's options: one version, and HBase's block cache on.

    happybase creates families with the block cache off, so that every read of a reader's row
    decoded the store file's block again (the region server's cache held 9 blocks after 4,000
    reads of a generation's rows).
    """
    return {"max_versions": 1, "block_cache_enabled": True, **options}


FAMILIES = {
    "users": {"f": family(), "h": family(), "r": family()},
    "books": {"m": family(), "p": family(), "f": family(), "s": family()},
    "generations": {"g": family()},
    "speed": {"v": family()},
}
Cells = dict[bytes, bytes]
# A scan for row keys only: one cell a row, without its value. KeyOnlyFilter alone still sends
# every cell of a row (10,000 books' keys took 350 ms; with one family and this, 70 ms).
_KEYS_ONLY = b"FirstKeyOnlyFilter() AND KeyOnlyFilter()"


def row_key(entity_id: int) -> bytes:
    return str(int(entity_id)).encode()


def _ids(values: list[int] | np.ndarray) -> bytes:
    return np.asarray(values, dtype=">i4").tobytes()


def _floats(values: list[float] | np.ndarray) -> bytes:
    return np.asarray(values, dtype=">f4").tobytes()


def _unpack_ids(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=">i4").astype(np.int64)


def _unpack_floats(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype=">f4").astype(np.float64)


def _text(value: Any) -> bytes:
    return b"" if value is None else str(value).encode()


def _number(value: bytes | None, kind: type) -> Any:
    try:
        return kind(float(value)) if value else None
    except ValueError:
        return None


def ranked(books: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
    """(book, score) pairs of a stored top-N, best first."""
    return list(zip(books.tolist(), scores.tolist(), strict=True))


def stored_reasons(books: np.ndarray, reasons: np.ndarray) -> dict[int, int]:
    """{top-N book: its reason} of a stored row; empty for a row written before reasons were stored."""
    return dict(zip(books.tolist(), reasons.tolist(), strict=True)) if len(reasons) == len(books) else {}


@dataclass(frozen=True)
class BatchRow:
    """A reader in a generation: factors, the ratings it learnt from, and the top-N with reasons."""

    features: np.ndarray
    history_books: np.ndarray
    history_ratings: np.ndarray
    books: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    HISTORY = (b"h:books", b"h:ratings")

    def to_row(self) -> Cells:
        return {
            b"f:v": _floats(self.features),
            b"h:books": _ids(self.history_books),
            b"h:ratings": np.asarray(self.history_ratings, dtype=np.int8).tobytes(),
            b"r:books": _ids(self.books),
            b"r:scores": _floats(self.scores),
            b"r:reasons": _ids(self.reasons),
        }

    @classmethod
    def from_row(cls, row: Cells) -> BatchRow:
        """Missing columns read as empty (a read of the history columns only, say)."""
        return cls(
            _unpack_floats(row.get(b"f:v")),
            _unpack_ids(row.get(b"h:books")),
            np.frombuffer(row.get(b"h:ratings") or b"", dtype=np.int8).astype(np.float64),
            _unpack_ids(row.get(b"r:books")),
            _unpack_floats(row.get(b"r:scores")),
            _unpack_ids(row.get(b"r:reasons")),
        )

    def history(self) -> dict[int, float]:
        return dict(zip(self.history_books.tolist(), self.history_ratings.tolist(), strict=True))

    def reason_of(self) -> dict[int, int]:
        return stored_reasons(self.books, self.reasons)


@dataclass(frozen=True)
class BookRow:
    """A book in a generation: metadata, popularity, factors (None: ALS never saw it), similar books."""

    book_id: int
    title: str
    authors: str
    year: int | None = None
    average_rating: float | None = None
    image_url: str = ""
    small_image_url: str = ""
    ratings_count: int = 0
    mean_rating: float | None = None
    bayes_rating: float | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    similar: tuple[tuple[int, float], ...] = field(default=(), repr=False)

    TITLES = (b"m:title", b"m:authors")

    def to_row(self) -> Cells:
        row = {
            b"m:title": _text(self.title),
            b"m:authors": _text(self.authors),
            b"m:year": _text(self.year),
            b"m:average_rating": _text(self.average_rating),
            b"m:image_url": _text(self.image_url),
            b"m:small_image_url": _text(self.small_image_url),
            b"p:count": _text(self.ratings_count or 0),
            b"p:mean": _text(self.mean_rating),
            b"p:bayes": _text(self.bayes_rating),
        }
        if self.features is not None:
            row[b"f:v"] = _floats(self.features)
        if self.similar:
            row[b"s:books"] = _ids([b for b, _ in self.similar])
            row[b"s:scores"] = _floats([s for _, s in self.similar])
        return row

    @classmethod
    def from_row(cls, book_id: int, row: Cells) -> BookRow:
        features = _unpack_floats(row[b"f:v"]) if b"f:v" in row else None
        return cls(
            book_id=book_id,
            title=row.get(b"m:title", b"").decode(),
            authors=row.get(b"m:authors", b"").decode(),
            year=_number(row.get(b"m:year"), int),
            average_rating=_number(row.get(b"m:average_rating"), float),
            image_url=row.get(b"m:image_url", b"").decode(),
            small_image_url=row.get(b"m:small_image_url", b"").decode(),
            ratings_count=_number(row.get(b"p:count"), int) or 0,
            mean_rating=_number(row.get(b"p:mean"), float),
            bayes_rating=_number(row.get(b"p:bayes"), float),
            features=features,
            similar=tuple(ranked(_unpack_ids(row.get(b"s:books")), _unpack_floats(row.get(b"s:scores")))),
        )


@dataclass(frozen=True)
class SpeedRow:
    """A reader's stream events the generation lacks, folded in: vector and top-N with reasons."""

    events: list[list[Any]]
    generation: str = ""
    vector: np.ndarray = field(default_factory=lambda: np.zeros(0))
    books: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_ts: int = 0
    updated_ms: int = 0
    reasons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    EVENTS = (b"v:events",)
    FRESHNESS = (b"v:events", b"v:updated_ms")

    def to_row(self) -> Cells:
        return {
            b"v:events": json.dumps(self.events).encode(),
            b"v:generation": self.generation.encode(),
            b"v:vector": _floats(self.vector),
            b"v:books": _ids(self.books),
            b"v:scores": _floats(self.scores),
            b"v:reasons": _ids(self.reasons),
            b"v:last_ts": str(self.last_ts).encode(),
            b"v:updated_ms": str(self.updated_ms).encode(),
        }

    @classmethod
    def from_row(cls, row: Cells) -> SpeedRow:
        """Missing columns read as empty (a read of the events only, say)."""
        return cls(
            json.loads(row.get(b"v:events", b"[]")),
            row.get(b"v:generation", b"").decode(),
            _unpack_floats(row.get(b"v:vector")),
            _unpack_ids(row.get(b"v:books")),
            _unpack_floats(row.get(b"v:scores")),
            int(row.get(b"v:last_ts", b"0")),
            int(row.get(b"v:updated_ms", b"0")),
            _unpack_ids(row.get(b"v:reasons")),
        )

    def reason_of(self) -> dict[int, int]:
        return stored_reasons(self.books, self.reasons)


def generations_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_generations"


def speed_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_speed"


def generation_table(config: Config, generation: str, kind: str) -> str:
    """`kind` is 'users' or 'books'."""
    return f"{config.hbase.table_prefix}_{generation}_{kind}"


def is_missing_table(error: Exception) -> bool:
    """Whether HBase refused a read because the table does not exist (its Thrift IOError says so)."""
    return "TableNotFoundException" in str(getattr(error, "message", ""))


def ensure_table(conn: Any, name: str, kind: str) -> None:
    """Create table `name` with the column families of `kind` if it does not exist."""
    if name.encode() not in conn.tables():
        conn.create_table(name, FAMILIES[kind])


def drop_table(conn: Any, name: str) -> None:
    if name.encode() in conn.tables():
        conn.delete_table(name, disable=True)


def put_rows(conn: Any, table: str, rows: Iterable[tuple[int, BatchRow | BookRow]], batch_size: int = 1000) -> None:
    """Write (id, row) pairs in batches: the batch layer's executors call this for each partition."""
    with conn.table(table).batch(batch_size=batch_size) as batch:
        for entity_id, row in rows:
            batch.put(row_key(entity_id), row.to_row())


class GenerationViews:
    """One generation's users and books tables (immutable once the generation is published)."""

    def __init__(self, conn: Any, config: Config, generation: str) -> None:
        self.conn, self.config, self.generation = conn, config, generation
        self.users_table = generation_table(config, generation, "users")
        self.books_table = generation_table(config, generation, "books")

    def create(self) -> None:
        ensure_table(self.conn, self.users_table, "users")
        ensure_table(self.conn, self.books_table, "books")

    def drop(self) -> None:
        drop_table(self.conn, self.users_table)
        drop_table(self.conn, self.books_table)

    def reader(self, user_id: int) -> BatchRow | None:
        row = self.conn.table(self.users_table).row(row_key(user_id))
        return BatchRow.from_row(row) if row else None

    def histories(self, user_ids: Iterable[int]) -> dict[int, BatchRow]:
        """The history columns of each reader the generation holds (others are absent)."""
        rows = self.conn.table(self.users_table).rows([row_key(u) for u in user_ids], columns=list(BatchRow.HISTORY))
        return {int(k): BatchRow.from_row(v) for k, v in rows}

    def reader_ids(self, limit: int | None = None) -> list[int]:
        table = self.conn.table(self.users_table)
        return [int(k) for k, _ in table.scan(columns=[b"f"], filter=_KEYS_ONLY, limit=limit, batch_size=5000)]

    def book_ids(self) -> set[int]:
        """The catalog's book ids (every book has metadata)."""
        table = self.conn.table(self.books_table)
        return {int(k) for k, _ in table.scan(columns=[b"m"], filter=_KEYS_ONLY, batch_size=5000)}

    def books(self, with_factors: bool = True) -> Iterator[BookRow]:
        columns = None if with_factors else [b"m", b"p", b"s"]
        for key, row in self.conn.table(self.books_table).scan(batch_size=2000, columns=columns):
            yield BookRow.from_row(int(key), row)

    def titles(self, book_ids: list[int]) -> dict[int, tuple[str, str]]:
        """(title, authors) by book id."""
        rows = self.conn.table(self.books_table).rows([row_key(b) for b in book_ids], columns=list(BookRow.TITLES))
        return {int(k): (v.get(b"m:title", b"?").decode(), v.get(b"m:authors", b"?").decode()) for k, v in rows}


class SpeedView:
    """The speed view: one table for every generation, rows keyed by reader."""

    def __init__(self, conn: Any, config: Config) -> None:
        self.conn, self.name = conn, speed_table(config)

    def ensure(self) -> None:
        ensure_table(self.conn, self.name, "speed")

    def reader(self, user_id: int) -> SpeedRow | None:
        """The reader's row; None also while the table is missing (`python -m deploy.init` creates it)."""
        try:
            row = self.conn.table(self.name).row(row_key(user_id))
        except Exception as e:
            if not is_missing_table(e):
                raise
            return None
        return SpeedRow.from_row(row) if row else None

    def reader_ids(self) -> set[int]:
        """Every reader with a row (keys only)."""
        return {int(k) for k, _ in self.conn.table(self.name).scan(filter=_KEYS_ONLY, batch_size=5000)}

    def events(self, user_ids: Iterable[int]) -> dict[int, list[list[Any]]]:
        rows = self.conn.table(self.name).rows([row_key(u) for u in user_ids], columns=list(SpeedRow.EVENTS))
        return {int(k): SpeedRow.from_row(v).events for k, v in rows}

    def freshness(self, user_ids: Iterable[int]) -> dict[int, SpeedRow]:
        """Events and write time of each reader that has a row (the speed benchmark's probe)."""
        rows = self.conn.table(self.name).rows([row_key(u) for u in user_ids], columns=list(SpeedRow.FRESHNESS))
        return {int(k): SpeedRow.from_row(v) for k, v in rows}

    def not_on(self, generation: str, user_ids: Iterable[int] | None = None) -> list[tuple[int, list[list[Any]]]]:
        """(reader, events) of each row (of `user_ids`, or of all) computed against another generation."""
        table, columns = self.conn.table(self.name), [b"v:events", b"v:generation"]
        if user_ids is None:
            rows = table.scan(columns=columns)
        else:
            rows = table.rows([row_key(u) for u in user_ids], columns=columns)
        return [
            (int(k), SpeedRow.from_row(v).events) for k, v in rows if v.get(b"v:generation", b"").decode() != generation
        ]

    @contextmanager
    def writer(self) -> Iterator[SpeedWriter]:
        with self.conn.table(self.name).batch() as batch:
            yield SpeedWriter(batch)


class SpeedWriter:
    """Puts and deletes of speed rows, sent together when the `SpeedView.writer` block ends."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def put(self, user_id: int, row: SpeedRow) -> None:
        self.batch.put(row_key(user_id), row.to_row())

    def delete(self, user_id: int) -> None:
        self.batch.delete(row_key(user_id))


class GenerationRecords:
    """What each published generation was: times, stream offsets, metrics and parameters."""

    def __init__(self, conn: Any, config: Config) -> None:
        self.conn, self.name = conn, generations_table(config)

    def ensure(self) -> None:
        ensure_table(self.conn, self.name, "generations")

    def record(self, manifest: dict[str, Any]) -> None:
        self.ensure()
        self.conn.table(self.name).put(
            manifest["generation"].encode(),
            {
                b"g:created_at": manifest["created_at"].encode(),
                b"g:data_cutoff": (manifest["data_cutoff"] or "").encode(),
                b"g:stream_offsets": json.dumps(manifest["stream_offsets"]).encode(),
                b"g:metrics": json.dumps(manifest["metrics"]).encode(),
                b"g:params": json.dumps(manifest["model"]).encode(),
            },
        )

    def generations(self) -> list[str]:
        if self.name.encode() not in self.conn.tables():
            return []
        return [k.decode() for k, _ in self.conn.table(self.name).scan(filter=_KEYS_ONLY)]

    def history(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` generations, oldest first: id, created_at, metrics."""
        if self.name.encode() not in self.conn.tables():
            return []
        rows = self.conn.table(self.name).scan(columns=[b"g:created_at", b"g:metrics"])
        found = [
            {
                "generation": k.decode(),
                "created_at": v.get(b"g:created_at", b"").decode(),
                "metrics": json.loads(v.get(b"g:metrics") or b"{}"),
            }
            for k, v in rows
        ]
        return found[-limit:]

    def metrics(self, generation: str) -> dict[str, Any]:
        if self.name.encode() not in self.conn.tables():
            return {}
        return json.loads(self.conn.table(self.name).row(generation.encode()).get(b"g:metrics") or b"{}")

    def delete(self, generation: str) -> None:
        if self.name.encode() in self.conn.tables():
            self.conn.table(self.name).delete(generation.encode())


def write_hive_views(spark: SparkSession, generation: str, frames: dict[str, DataFrame]) -> None:
    """Write each view (a `HIVE_VIEWS` name → its rows) into its Hive table's partition for `generation`."""
    from pyspark.sql import functions as F

    for table, frame in frames.items():
        columns = [c for c in spark.table(table).columns if c != "generation"]
        frame.select(*columns).withColumn("generation", F.lit(generation)).write.insertInto(table, overwrite=True)


def drop_hive_views(spark: SparkSession, generation: str) -> None:
    for table in HIVE_VIEWS:
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION (generation='{generation}')")
