"""Rating events on Kafka: the one definition of their shape, validation and production.

The shape is readnext/schemas/rating_event.schema.json; `parse_event` enforces exactly that
schema (and that the book exists), so the serving layer refuses what the speed layer would send
to the dead-letter topic.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from readnext.clients import kafka_admin, kafka_producer
from readnext.config import Config

SCHEMA_FILE = Path(__file__).with_name("schemas") / "rating_event.schema.json"
FIELDS = {"user_id", "book_id", "rating", "ts", "event_id"}
MAX_ID = 2_147_483_647


class InvalidEvent(ValueError):
    """An event that does not follow the schema; the message is the reason recorded for it."""


@dataclass(frozen=True)
class RatingEvent:
    user_id: int
    book_id: int
    rating: int
    ts_ms: int | None
    event_id: str | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"user_id": self.user_id, "book_id": self.book_id, "rating": self.rating}
        if self.ts_ms is not None:
            body["ts"] = self.ts_ms
        if self.event_id:
            body["event_id"] = self.event_id
        return json.dumps(body, separators=(",", ":")).encode()


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    if name not in body:
        raise InvalidEvent(f"missing field {name}")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidEvent(f"{name} {value} outside {low}-{high}")
    return value


def _timestamp_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidEvent("ts must be ISO-8601 text or epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise InvalidEvent("ts must not be negative")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"ts {value[:40]!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts needs a time zone (e.g. Z or +02:00)")
        return int(parsed.timestamp() * 1000)
    raise InvalidEvent("ts must be ISO-8601 text or epoch milliseconds")


def parse_event(raw: bytes | str | dict[str, Any], known_books: set[int] | None = None) -> RatingEvent:
    """Validate one event against the schema (and the catalog, when given); raises InvalidEvent."""
    if isinstance(raw, dict):
        body = raw
    else:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidEvent(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("not a JSON object")
    extra = set(body) - FIELDS
    if extra:
        raise InvalidEvent(f"unknown field(s): {', '.join(sorted(extra))}")
    user = _int_field(body, "user_id", 1, MAX_ID)
    book = _int_field(body, "book_id", 1, MAX_ID)
    rating = _int_field(body, "rating", 1, 5)
    ts = _timestamp_ms(body["ts"]) if body.get("ts") is not None else None
    event_id = body.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 64):
        raise InvalidEvent("event_id must be text of at most 64 characters")
    if known_books is not None and book not in known_books:
        raise InvalidEvent(f"unknown book {book}")
    return RatingEvent(user, book, rating, ts, event_id)


def ensure_topics(config: Config) -> None:
    """Create the ratings and dead-letter topics if they are missing."""
    admin = kafka_admin(config)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(t, num_partitions=config.speed.topic_partitions, replication_factor=1)
            for t in (config.kafka.ratings_topic, config.kafka.dead_letter_topic)
            if t not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()


class RatingProducer:
    """Posts rating events to the ratings topic, keyed by user; `send` returns once Kafka has it."""

    def __init__(self, config: Config) -> None:
        self.topic = config.kafka.ratings_topic
        # Fail fast when Kafka is away: the caller answers "retry later" instead of hanging.
        self.producer = kafka_producer(config, max_block_ms=10_000)

    def send(self, user_id: int, book_id: int, rating: int, ts_ms: int | None = None, timeout_s: float = 10) -> str:
        """Validate, send and wait for the broker's acknowledgement; returns the event id."""
        ts_ms = ts_ms if ts_ms is not None else int(datetime.now(timezone.utc).timestamp() * 1000)
        event = parse_event({"user_id": user_id, "book_id": book_id, "rating": rating, "ts": ts_ms})
        event = RatingEvent(event.user_id, event.book_id, event.rating, event.ts_ms, uuid.uuid4().hex)
        self.producer.send(self.topic, key=str(user_id).encode(), value=event.to_json()).get(timeout=timeout_s)
        return event.event_id or ""

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (replays and tests of the dead-letter path)."""
        self.producer.send(self.topic, key=key, value=value)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()
