"""What the serving process holds: the current model and catalog in memory, HBase and Kafka clients.

The model and the catalog are swapped together when the artifact store's CURRENT pointer moves
(checked every `[serving] refresh_s`), so a request sees one generation throughout and no request
fails during a reload. The check and the load run on a thread of their own: no request waits for
the pointer's read or the catalog's scan.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from flask import current_app
from werkzeug.exceptions import ServiceUnavailable

from readnext import artifacts
from readnext.clients import hbase_pool
from readnext.config import Config
from readnext.events import RatingProducer
from readnext.model import ModelHolder, ServedModel
from readnext.rerank import scaled_popularity
from readnext.views import BatchRow, BookRow, GenerationViews
from serving_layer.speed_readers import SpeedReaders

log = logging.getLogger(__name__)
_WORD = re.compile(r"[^ \t\r\n]+")
T = TypeVar("T")


def is_unavailable(error: Exception) -> bool:
    """Whether an error means a data store could not be reached (as opposed to a bug)."""
    from thriftpy2.transport import TTransportException

    return isinstance(error, TTransportException | ConnectionError | OSError)


def query_words(text: str) -> list[str]:
    """A search query's words: runs of characters between spaces, tabs and line breaks.

    Split exactly as the API's pattern for `q` counts them (serving_layer/openapi.py), so that the
    cap on words the schema states is the cap the server applies.
    """
    return _WORD.findall(text)


def book_summary(book: BookRow) -> dict[str, Any]:
    """A book's public fields, as the API and the web UI show them."""
    return {
        "book_id": book.book_id,
        "title": book.title,
        "authors": book.authors,
        "year": book.year,
        "average_rating": book.average_rating,
        "cover_url": book.image_url or None,
        "ratings_count": book.ratings_count,
    }


@dataclass(frozen=True)
class Catalog:
    """One generation's books, with what re-ranking needs per book worked out once at load.

    Each book's popularity and first author (as a number, 0 when unknown) in arrays ordered by
    book id, so that re-ranking a reader's candidates is a lookup of arrays rather than of one
    dict entry per book.
    """

    generation: str
    books: dict[int, BookRow]
    popular: tuple[int, ...]
    ids: np.ndarray
    scaled_popularity: np.ndarray
    author_codes: np.ndarray

    @classmethod
    def load(cls, conn: Any, config: Config, generation: str) -> Catalog:
        books = {book.book_id: book for book in GenerationViews(conn, config, generation).books(with_factors=False)}
        rated = [b for b in books.values() if b.bayes_rating is not None]
        popular = tuple(b.book_id for b in sorted(rated, key=lambda b: (-b.bayes_rating, -b.ratings_count, b.book_id)))
        largest = max((b.ratings_count for b in books.values()), default=0)
        ids = sorted(books)
        scaled = scaled_popularity(np.array([books[b].ratings_count for b in ids], dtype=float), largest)
        codes: dict[str, int] = {"": 0}
        authors = [codes.setdefault(books[b].authors.split(",")[0].strip(), len(codes)) for b in ids]
        return cls(
            generation,
            books,
            popular,
            np.array(ids, dtype=np.int64),
            scaled,
            np.array(authors, dtype=np.int64),
        )

    def summary(self, book_id: int) -> dict[str, Any]:
        """The book's public fields, or just its id for a book the catalog does not hold."""
        book = self.books.get(book_id)
        return book_summary(book) if book else {"book_id": book_id}

    def search(self, query: str) -> list[BookRow]:
        """Books whose title or authors hold every word: title prefix first, then words in the title, then popular."""
        q = query.lower()
        words = query_words(q)
        hits = []
        for book in self.books.values():
            title, authors = book.title.lower(), book.authors.lower()
            if all(w in title or w in authors for w in words):
                in_title = sum(w in title for w in words)
                hits.append(((not title.startswith(q), -in_title, -book.ratings_count, book.book_id), book))
        return [book for _, book in sorted(hits, key=lambda h: h[0])]

    def _lookup(self, values: np.ndarray, book_ids: np.ndarray, missing: float) -> np.ndarray:
        """`values` of each book, `missing` for a book the catalog does not hold."""
        if not len(self.ids):
            return np.full(len(book_ids), missing, dtype=values.dtype)
        at = np.minimum(np.searchsorted(self.ids, book_ids), len(self.ids) - 1)
        return np.where(self.ids[at] == book_ids, values[at], missing)

    def popularity(self, book_ids: np.ndarray) -> np.ndarray:
        """log(1 + ratings count), scaled to 0..1 over the catalog (0 for a book it lacks)."""
        return self._lookup(self.scaled_popularity, book_ids, 0.0)

    def authors(self, book_ids: np.ndarray) -> np.ndarray:
        """Each book's first author as a number, the unit of the diversity control (0: unknown or not held)."""
        return self._lookup(self.author_codes, book_ids, 0)


class BatchRows:
    """The generation's reader rows a worker has read, the least recently used dropped beyond `size`.

    A generation's tables never change once it is published, so a remembered row is exact for as
    long as the generation is served: a known reader's request reads only the speed view.
    """

    def __init__(self, config: Config, generation: str) -> None:
        self.config, self.generation = config, generation
        self._rows: OrderedDict[int, BatchRow | None] = OrderedDict()
        self._lock = threading.Lock()

    def reader(self, hbase: Callable[[Callable[[Any], Any]], Any], user_id: int) -> BatchRow | None:
        """The reader's row; `hbase(work)` runs the read, only when the row is not remembered."""
        with self._lock:
            if user_id in self._rows:
                self._rows.move_to_end(user_id)
                return self._rows[user_id]
        row = hbase(lambda conn: GenerationViews(conn, self.config, self.generation).reader(user_id))
        with self._lock:
            self._rows[user_id] = row
            while len(self._rows) > self.config.serving.batch_rows_cached:
                self._rows.popitem(last=False)
        return row


@dataclass(frozen=True)
class Snapshot:
    """One generation's model, catalog and remembered reader rows, used together by a request."""

    model: ServedModel
    catalog: Catalog
    batch_rows: BatchRows


class ServingState:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        self.holder = ModelHolder(artifacts.open_store(config))
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._reload_lock = threading.Lock()  # held by the one thread that loads a generation
        self._producer_lock = threading.Lock()
        self._producer: RatingProducer | None = None
        self.speed_readers = SpeedReaders(config, self.hbase)

    def snapshot(self) -> Snapshot | None:
        """The current generation; once one is served, a newer one is loaded in the background."""
        if self._snapshot is None:
            with self._reload_lock:
                if self._snapshot is None:
                    self._checked = time.monotonic()
                    self._reload()
        elif self._due() and self._reload_lock.acquire(blocking=False):
            self._checked = time.monotonic()
            threading.Thread(target=self._reload_in_background, name="readnext-refresh", daemon=True).start()
        return self._snapshot

    def warm_up(self) -> None:
        """Load the served generation and start following the ratings topic, before any request.

        Each web-server worker calls it before its first request (`create_worker_app`).
        """
        self.snapshot()
        self.speed_readers.start()

    def _due(self) -> bool:
        return time.monotonic() - self._checked >= self.config.serving.refresh_s

    def _reload_in_background(self) -> None:
        try:
            self._reload()
        except Exception:  # noqa: BLE001 - keep serving the current generation; the next check retries
            log.exception("loading the current generation failed; still serving %s", self.generation)
        finally:
            self._reload_lock.release()

    @property
    def generation(self) -> str | None:
        """The generation served now, without checking the pointer (for log lines)."""
        return self._snapshot.model.generation if self._snapshot else None

    def _reload(self) -> None:
        self.holder.refresh()
        model = self.holder.model
        if model is None or (self._snapshot is not None and self._snapshot.model.generation == model.generation):
            return
        catalog = self.hbase(lambda conn: Catalog.load(conn, self.config, model.generation))
        self._snapshot = Snapshot(model, catalog, BatchRows(self.config, model.generation))

    def hbase(self, work: Callable[[Any], T]) -> T:
        """`work(connection)` on this thread's pooled HBase connection, retried once if it was dropped.

        A Thrift server restart leaves every pooled connection dead; happybase reopens the one
        that failed (the inner context), and the retry runs on it (the outer context holds it).
        """
        if self._pool is None:  # opened on first use: building the app touches no server
            with self._pool_lock:
                if self._pool is None:
                    self._pool = hbase_pool(self.config, size=8)
        with self._pool.connection() as conn:
            try:
                with self._pool.connection() as same:
                    return work(same)
            except Exception as e:  # noqa: BLE001 - only a dropped connection is retried
                if not is_unavailable(e):
                    raise
                log.info("HBase connection dropped (%s); retrying once on a new one", e)
            conn.open()  # happybase reopens a refreshed connection lazily; fail here if HBase is gone
            return work(conn)

    def producer(self) -> RatingProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = RatingProducer(self.config)
            return self._producer


def serving_state() -> ServingState:
    """The app's serving state: the one accessor the API and the web UI use."""
    return current_app.extensions["readnext"]


def current_snapshot() -> Snapshot:
    """The generation a request uses; 503 (JSON under /api, a page otherwise) before the first one."""
    snap = serving_state().snapshot()
    if snap is None:
        raise ServiceUnavailable("no model generation is published yet: run the batch layer first")
    return snap
