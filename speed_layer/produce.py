"""Post ratings to Kafka from a CSV file or stdin (replays and load), with the serving layer's producer."""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from kafka.errors import KafkaError

from readnext.config import Config
from readnext.events import InvalidEvent, RatingProducer
from readnext.retry import with_retries


class NotSent(RuntimeError):
    """Kafka stayed away: one line and the lines after it were not sent; those before it were."""


def produce(config: Config, lines: TextIO, rate: float | None = None) -> tuple[int, int]:
    """Send each `user_id,book_id,rating[,ts]` row (header optional); returns (sent, refused).

    A send Kafka does not acknowledge is tried again like a store that is away (`[speed]
    store_attempts`, doubling waits from `store_retry_s`), so a broker restart does not stop a
    long replay; a rating whose first send did land is then in the topic twice (the same rating
    again, which changes nothing). If Kafka stays away, `NotSent` names the line to resume from.
    """
    producer = RatingProducer(config)
    speed = config.speed
    sent = refused = 0
    started = time.monotonic()
    try:
        for number, row in enumerate(_rows(lines), start=1):
            try:
                user, book, rating = (int(x) for x in row[:3])
                ts = int(row[3]) if len(row) > 3 and row[3] else None
                with_retries(
                    lambda user=user, book=book, rating=rating, ts=ts: producer.send(user, book, rating, ts),
                    f"sending line {number}",
                    speed.store_attempts,
                    speed.store_retry_s,
                    give_up=lambda e: not isinstance(e, KafkaError),
                )
                sent += 1
            except (ValueError, InvalidEvent) as e:
                refused += 1
                print(f"line {number}: refused: {e}", file=sys.stderr)
            except KafkaError as e:
                raise NotSent(
                    f"line {number} was not sent after {speed.store_attempts} attempts ({e}); the {sent} "
                    f"rating(s) before it were: resume from line {number}"
                ) from e
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
