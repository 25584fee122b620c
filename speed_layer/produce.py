"""Post ratings to Kafka from a CSV file or stdin (replays and load), with the serving layer's producer."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from readnext.config import Config
from readnext.events import InvalidEvent, RatingProducer


def produce(config: Config, lines: TextIO, rate: float | None = None) -> tuple[int, int]:
    """Send each `user_id,book_id,rating[,ts]` row (header optional); returns (sent, refused)."""
    producer = RatingProducer(config)
    sent = refused = 0
    started = time.monotonic()
    try:
        for number, row in enumerate(_rows(lines), start=1):
            try:
                user, book, rating = (int(x) for x in row[:3])
                ts = int(row[3]) if len(row) > 3 and row[3] else None
                producer.send(user, book, rating, ts)
                sent += 1
            except (ValueError, InvalidEvent) as e:
                refused += 1
                print(f"line {number}: refused: {e}", file=sys.stderr)
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    finally:
        producer.flush()
        producer.close()
    return sent, refused


def _rows(lines: TextIO) -> Iterable[list[str]]:
    for row in csv.reader(lines):
        if row and row[0].strip().lower() != "user_id":
            yield row
