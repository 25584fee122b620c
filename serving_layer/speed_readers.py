"""Which readers may have a speed row, so that a known reader without one costs no HBase read.

Most readers a worker answers have rated nothing since the served generation, yet each of their
requests asked HBase for a speed row. Every speed row starts as a rating on the ratings topic,
so a worker follows that topic itself (every partition, no consumer group) and keeps the set of
readers named there, seeded by a scan of the speed view's keys. Its fetches wait at the broker
for up to `[serving] speed_readers_fetch_wait_ms` (100) so that it reads a few batches a second
rather than one per rating; it still hears of a rating before the row is written (150 ms and
more after the send: a trigger's wait, then the micro-batch): the set may name readers without
a row yet (their request reads the view, as before) but leaves out none that has one for longer
than the follower lags.
The consumer starts `[serving] speed_readers_rescan_s` seconds back in the topic, before the
scan, so a speed job that lags by less than that loses nothing between the two; the scan is repeated as often, for a
longer lag, on a thread of its own (the follower does not pause for it). Until the first scan
has ended, and while the follower restarts after an error, every request reads the view.
`speed_readers_rescan_s` = 0 turns it off: every request reads the view.

A worker also remembers the speed rows it read (`[serving] speed_rows_cached`, least recently
used dropped), since a get costs HBase and Thrift more CPU than the rest of a known reader's
request. The follower keeps, per reader, the highest offset of each partition it has seen;
a row is remembered only when it holds all of them (or the served generation does), and is
used while the follower has seen nothing newer of its reader, the generation is the same, and
for at most `speed_readers_rescan_s` (the same backstop as the scan). The follower hears of a
rating before the speed job writes it, so a row read in between lacks it, is not remembered,
and is read again at the next request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from readnext.clients import kafka_consumer, topic_partitions
from readnext.config import Config
from readnext.events import json_integer
from readnext.model import ServedModel
from readnext.views import SpeedRow, SpeedView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Remembered:
    row: SpeedRow | None
    seen: Mapping[str, int] | None  # the follower's offsets of the reader when the row was read
    generation: str
    until: float  # time.monotonic()


def holds_all(row: SpeedRow | None, seen: Mapping[str, int] | None, model: ServedModel) -> bool:
    """Whether `row` (None: no row) is on `model`'s generation and holds every event `seen` names.

    An event the generation holds (at or below its offset mark) needs no row.
    """
    if row is not None and row.generation != model.generation:
        return False
    written: dict[str, int] = {}
    for origin, offset, *_ in row.events if row is not None else ():
        written[origin] = max(written.get(origin, -1), int(offset))
    marks = model.stream_offsets
    return all(offset <= max(marks.get(o, -1), written.get(o, -1)) for o, offset in (seen or {}).items())


class SpeedReaders:
    """The readers that may have a speed row, and their rows as read; kept by threads of their own from first use."""

    def __init__(self, config: Config, hbase: Callable[[Callable[[Any], Any]], Any]) -> None:
        self.config, self.hbase = config, hbase
        self.window_s = config.serving.speed_readers_rescan_s
        self._readers: set[int] = set()
        self._seen: dict[int, dict[str, int]] = {}  # replaced, never changed in place: a new event, a new dict
        self._rows: OrderedDict[int, _Remembered] = OrderedDict()
        self._rows_lock = threading.Lock()
        self._epoch = 0  # a follower's restart forgets every row, and rows read before it are not remembered
        self._ready = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def might_have(self, user_id: int) -> bool:
        """False only when the reader surely has no speed row; starts following the topic on first use."""
        if not self.window_s:
            return True
        if not self._started:
            self.start()
        return not self._ready.is_set() or user_id in self._readers

    def row(self, user_id: int, model: ServedModel) -> SpeedRow | None:
        """The reader's speed row; HBase is read only when the row may differ from the one remembered."""
        if not self.might_have(user_id):
            return None
        seen, now = self._seen.get(user_id), time.monotonic()
        with self._rows_lock:
            kept = self._rows.get(user_id)
            if kept and kept.seen is seen and kept.generation == model.generation and now < kept.until:
                self._rows.move_to_end(user_id)
                return kept.row
            epoch = self._epoch
        row = self.hbase(lambda conn: SpeedView(conn, self.config).reader(user_id))
        size = self.config.serving.speed_rows_cached
        if size and self._ready.is_set() and holds_all(row, seen, model):
            with self._rows_lock:
                if epoch == self._epoch:
                    self._rows[user_id] = _Remembered(row, seen, model.generation, now + self.window_s)
                    self._rows.move_to_end(user_id)
                    while len(self._rows) > size:
                        self._rows.popitem(last=False)
        return row

    def start(self) -> None:
        """Follow the topic and rescan the view from now on (once; later calls do nothing)."""
        if not self.window_s:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._follow, name="readnext-speed-readers", daemon=True).start()
        threading.Thread(target=self._rescan, name="readnext-speed-rescan", daemon=True).start()

    def _scan(self) -> None:
        self._readers |= self.hbase(lambda conn: SpeedView(conn, self.config).reader_ids())

    def _rescan(self) -> None:
        while True:
            time.sleep(self.window_s)
            if self._ready.is_set():
                try:
                    self._scan()
                except Exception as e:  # noqa: BLE001 - the next rescan retries; the follower goes on
                    log.warning("rescanning the speed view's readers failed (the next rescan retries): %s", e)

    def _follow(self) -> None:
        """Follow the topic for good; after an error, read the view every request until caught up again."""
        while True:
            try:
                self._follow_once()
            except Exception:  # noqa: BLE001 - a follower that stops would serve stale answers for good
                log.exception("following %s failed; reading every speed row until it restarts", self.topic)
            self._ready.clear()
            with self._rows_lock:
                self._rows.clear()
                self._epoch += 1
            time.sleep(self.config.serving.refresh_s)

    @property
    def topic(self) -> str:
        return self.config.kafka.ratings_topic

    def _follow_once(self) -> None:
        serving = self.config.serving
        consumer = kafka_consumer(
            self.config,
            enable_auto_commit=False,
            fetch_max_wait_ms=serving.speed_readers_fetch_wait_ms,
            fetch_min_bytes=serving.speed_readers_fetch_min_bytes,
        )
        try:
            partitions = topic_partitions(consumer, self.topic)
            if not partitions:
                raise RuntimeError(f"topic {self.topic} has no partitions (python -m deploy.init creates it)")
            consumer.assign(partitions)
            since_ms = int((time.time() - self.window_s) * 1000)
            starts = consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            ends = consumer.end_offsets(partitions)
            for partition in partitions:
                found = starts.get(partition)
                consumer.seek(partition, found.offset if found is not None else ends[partition])
            self._scan()
            self._ready.set()
            while True:
                for records in consumer.poll(timeout_ms=1000).values():
                    for record in records:
                        self._saw(record)
        finally:
            consumer.close()

    def _saw(self, record: Any) -> None:
        user = _reader(record)
        if user is None:
            return
        origin, seen = f"{record.topic}-{record.partition}", self._seen.get(user)
        if seen is None or seen.get(origin, -1) < record.offset:
            self._seen[user] = {**(seen or {}), origin: record.offset}
        self._readers.add(user)  # after: a reader `might_have` names has its offsets known already


def _reader(record: Any) -> int | None:
    """The user id an event names, or None: such an event goes to the dead-letter topic, never to a row."""
    try:
        body = json.loads(record.value)
    except (ValueError, RecursionError, TypeError):
        return None
    return json_integer(body.get("user_id")) if isinstance(body, dict) else None
