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
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from readnext.clients import kafka_consumer
from readnext.config import Config
from readnext.events import json_integer
from readnext.views import SpeedView

log = logging.getLogger(__name__)


class SpeedReaders:
    """The readers that may have a speed row, kept by threads of their own from the first question on."""

    def __init__(self, config: Config, hbase: Callable[[Callable[[Any], Any]], Any]) -> None:
        self.config, self.hbase = config, hbase
        self.window_s = config.serving.speed_readers_rescan_s
        self._readers: set[int] = set()
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
            numbers = consumer.partitions_for_topic(self.topic) or set()
            partitions = [TopicPartition(self.topic, p) for p in sorted(numbers)]
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
                    self._readers.update(r for r in map(_reader, records) if r is not None)
        finally:
            consumer.close()


def _reader(record: Any) -> int | None:
    """The user id an event names, or None: such an event goes to the dead-letter topic, never to a row."""
    try:
        body = json.loads(record.value)
    except (ValueError, RecursionError, TypeError):
        return None
    return json_integer(body.get("user_id")) if isinstance(body, dict) else None
