"""Rating events on Kafka: the one definition of their shape, validation and production.

The shape is readnext/schemas/rating_event.schema.json; `parse_event` enforces exactly that
schema (and that the book exists), so the serving layer refuses what the speed layer would send
to the dead-letter topic.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from readnext.clients import kafka_admin, kafka_consumer, kafka_producer, topic_partitions
from readnext.config import Config

SCHEMA_FILE = Path(__file__).with_name("schemas") / "rating_event.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
_PROPERTIES: dict[str, Any] = SCHEMA["properties"]
FIELDS = set(_PROPERTIES)
MAX_ID: int = _PROPERTIES["user_id"]["maximum"]
RATING_MIN: int = _PROPERTIES["rating"]["minimum"]
RATING_MAX: int = _PROPERTIES["rating"]["maximum"]
EARLIEST_TS_MS: int = _PROPERTIES["ts"]["x-earliest-ms"]
MAX_FUTURE_SKEW_MS: int = _PROPERTIES["ts"]["x-max-future-skew-s"] * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)


class InvalidEvent(ValueError):
    """An event that does not follow the schema; the message is the reason recorded for it."""


class UnknownBook(InvalidEvent):
    """A well-formed event about a book the catalog does not have."""


@dataclass(frozen=True)
class RatingEvent:
    user_id: int
    book_id: int
    rating: int
    ts_ms: int | None
    event_id: str | None = None
    writer: str | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"user_id": self.user_id, "book_id": self.book_id, "rating": self.rating}
        if self.ts_ms is not None:
            body["ts"] = self.ts_ms
        if self.event_id:
            body["event_id"] = self.event_id
        if self.writer:
            body["writer"] = self.writer
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class StreamEvent:
    """A valid event as read from Kafka: where it came from (origin "<topic>-<partition>", offset), what it says."""

    origin: str
    offset: int
    user_id: int
    book_id: int
    rating: int
    ts_ms: int
    writer: str | None = None

    def as_row(self) -> list[Any]:
        return [self.origin, self.offset, self.book_id, self.rating, self.ts_ms]


def now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def json_integer(value: Any) -> int | None:
    """The value as JSON Schema's `integer` reads it (5 and 5.0 alike), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _int_field(body: dict[str, Any], name: str) -> int:
    if name not in body:
        raise InvalidEvent(f"missing field {name}")
    value = json_integer(body[name])
    if value is None:
        raise InvalidEvent(f"{name} must be an integer, got {type(body[name]).__name__}")
    low, high = _PROPERTIES[name]["minimum"], _PROPERTIES[name]["maximum"]
    if not low <= value <= high:
        shown = f" {value}" if abs(value) < 10**30 else ""
        raise InvalidEvent(f"{name}{shown} outside {low}-{high}")
    return value


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if name in body and (not isinstance(value, str) or len(value) > _PROPERTIES[name]["maxLength"]):
        raise InvalidEvent(f"{name} must be text of at most {_PROPERTIES[name]['maxLength']} characters")
    return value


def _timestamp_ms(value: Any, reference_ms: int) -> int:
    """Epoch milliseconds of `ts`, within [EARLIEST_TS_MS, reference_ms + MAX_FUTURE_SKEW_MS]."""
    ms = json_integer(value)
    if ms is None and not isinstance(value, str):
        raise InvalidEvent("ts must be RFC 3339 text with a time zone or epoch milliseconds")
    if ms is None:
        if len(value) > _PROPERTIES["ts"]["oneOf"][0]["maxLength"]:
            raise InvalidEvent("ts is too long for a date-time")
        try:
            parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"ts {value!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts needs a time zone (e.g. Z or +02:00)")
        try:
            ms = (parsed - _EPOCH) // _MILLISECOND
        except OverflowError:
            raise InvalidEvent(f"ts {value!r} is out of range") from None
    if ms < EARLIEST_TS_MS:
        raise InvalidEvent("ts is before 2000-01-01T00:00:00Z")
    if ms > reference_ms + MAX_FUTURE_SKEW_MS:
        raise InvalidEvent(f"ts is more than {MAX_FUTURE_SKEW_MS // 1000} s in the future")
    return ms


def parse_event(
    raw: bytes | str | dict[str, Any], known_books: Container[int] | None = None, reference_ms: int | None = None
) -> RatingEvent:
    """Validate one event against the schema (and the catalog, when given); raises InvalidEvent.

    `reference_ms` is the time the event is taken (the broker's append time in the streaming job,
    the clock in the API): `ts` may be at most the schema's skew ahead of it. Whatever `raw`
    holds, the only exception is InvalidEvent.
    """
    if isinstance(raw, dict):
        body = raw
    else:
        try:
            body = json.loads(raw)
        except RecursionError:
            raise InvalidEvent("not JSON: nested too deeply") from None
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, integers of too many digits
            raise InvalidEvent(f"not JSON: {str(e)[:120]}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("not a JSON object")
    extra = set(body) - FIELDS
    if extra:
        raise InvalidEvent(f"unknown field(s): {', '.join(sorted(repr(k)[:40] for k in extra))}")
    user = _int_field(body, "user_id")
    book = _int_field(body, "book_id")
    rating = _int_field(body, "rating")
    ts = _timestamp_ms(body["ts"], now_ms() if reference_ms is None else reference_ms) if "ts" in body else None
    event_id, writer = _text_field(body, "event_id"), _text_field(body, "writer")
    if known_books is not None and book not in known_books:
        raise UnknownBook(f"unknown book {book}")
    return RatingEvent(user, book, rating, ts, event_id, writer)


# The broker stamps each record with its append time: the streaming job's reference clock for
# `ts` (the same on every replay) is then not the producer's to choose.
TOPIC_CONFIGS = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(config: Config) -> None:
    """Create the ratings and dead-letter topics if they are missing; the ratings topic takes append times."""
    admin = kafka_admin(config)
    ratings = config.kafka.ratings_topic
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                t,
                num_partitions=config.speed.topic_partitions,
                replication_factor=1,
                topic_configs=TOPIC_CONFIGS if t == ratings else {},
            )
            for t in (ratings, config.kafka.dead_letter_topic)
            if t not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
        if ratings in existing:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, ratings, configs=TOPIC_CONFIGS)])
    finally:
        admin.close()


def ratings_end_offsets(config: Config) -> dict[str, int]:
    """The next offset of each ratings partition, by origin ("<topic>-<partition>"): one Kafka round trip."""
    topic = config.kafka.ratings_topic
    consumer = kafka_consumer(config, enable_auto_commit=False)
    try:
        partitions = topic_partitions(consumer, topic)
        ends = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close()
    return {f"{topic}-{tp.partition}": int(end) for tp, end in ends.items()}


class KafkaAway(KafkaError):
    """A send refused at once: one failed less than `[kafka] send_timeout_s` ago."""


class RatingProducer:
    """Posts rating events to the ratings topic, keyed by user; `send` returns once Kafka has it.

    After a send fails, the sends of the next `send_timeout_s` fail at once (`KafkaAway`) instead
    of each waiting out that bound: the web server's one worker would hold every other request
    behind them while Kafka is away.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topic = config.kafka.ratings_topic
        self.timeout_s = config.kafka.send_timeout_s
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._away_until = 0.0

    def _current(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                # Fail fast when Kafka is away: the caller answers "retry later" instead of hanging,
                # and a record given up is expired in the producer too, never sent later.
                bound_ms, linger_ms = int(self.timeout_s * 1000), 5
                self._producer = kafka_producer(
                    self.config,
                    max_block_ms=bound_ms,
                    bootstrap_timeout_ms=bound_ms,
                    linger_ms=linger_ms,
                    request_timeout_ms=bound_ms - linger_ms,
                    delivery_timeout_ms=bound_ms,
                )
            return self._producer

    def _abandon(self, producer: KafkaProducer) -> None:
        """Drop a producer whose delivery failed; the next send starts a new one.

        After a delivery timeout an idempotent producer cannot know whether the broker wrote the
        record (KAFKA-14397), and kafka-python then holds that partition's later records for good:
        measured here, every send timed out after a 10 s broker restart. A new producer has a new
        producer id and starts clean.
        """
        with self._lock:
            if self._producer is producer:
                self._producer = None
        producer.close(timeout=0)

    def send(
        self,
        user_id: int,
        book_id: int,
        rating: int,
        ts_ms: int | None = None,
        writer: str | None = None,
    ) -> str:
        """Validate, send and wait for the broker's acknowledgement; returns the event id."""
        ts_ms = ts_ms if ts_ms is not None else now_ms()
        event = parse_event({"user_id": user_id, "book_id": book_id, "rating": rating, "ts": ts_ms})
        event = RatingEvent(event.user_id, event.book_id, event.rating, event.ts_ms, uuid.uuid4().hex, writer)
        wait_s = self._away_until - time.monotonic()
        if wait_s > 0:
            raise KafkaAway(f"a send failed moments ago; the next try in {wait_s:.1f} s")
        producer = None
        try:
            producer = self._current()  # its first connection may be what fails
            producer.send(self.topic, key=str(user_id).encode(), value=event.to_json()).get(timeout=self.timeout_s + 1)
        except KafkaError:
            self._away_until = time.monotonic() + self.timeout_s
            if producer is not None:
                self._abandon(producer)
            raise
        return event.event_id or ""

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (replays and tests of the dead-letter path)."""
        self._current().send(self.topic, key=key, value=value)

    def flush(self) -> None:
        self._current().flush()

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
