"""The master dataset's stream appends: events from Kafka written to the `ratings` table once each.

Appends skip (origin, seq) pairs already present, so a micro-batch replayed after a crash adds
nothing twice. A record whose conversion or write fails on its own account is set aside with its
reason (the caller dead-letters it) and the rest of the batch is stored; a failure that is not
about a record (the metastore or the file system away) propagates, so the caller retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspark.errors.exceptions.captured import ArithmeticException, DateTimeException, NumberFormatException

from readnext.events import StreamEvent

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STREAM_SCHEMA = "user_id INT, book_id INT, rating INT, ts_ms BIGINT, seq BIGINT, origin STRING"
_RECORD_ERRORS = (
    ValueError,
    TypeError,
    OverflowError,
    ArithmeticError,
    ArithmeticException,
    DateTimeException,
    NumberFormatException,
)


def is_record_error(error: BaseException) -> bool:
    """Errors that a value causes (conversion, overflow), as opposed to an unavailable store."""
    return isinstance(error, _RECORD_ERRORS)


def append_stream_events(spark: SparkSession, events: list[StreamEvent]) -> None:
    """Append events to `ratings` (source = 'stream'), skipping those already stored."""
    from pyspark.sql import functions as F

    new = spark.createDataFrame(
        [(e.user_id, e.book_id, e.rating, e.ts_ms, e.offset, e.origin) for e in events], STREAM_SCHEMA
    )
    present = (
        spark.table("ratings")
        .where((F.col("source") == "stream") & F.col("origin").isin(sorted({e.origin for e in events})))
        .where(F.col("seq") >= min(e.offset for e in events))
        .select("origin", "seq")
    )
    event_time = (F.col("ts_ms") / 1000).cast("timestamp")
    new.join(present, ["origin", "seq"], "left_anti").select(
        "user_id",
        "book_id",
        F.col("rating").cast("tinyint"),
        event_time.alias("event_time"),
        "seq",
        "origin",
        F.lit("stream").alias("source"),
        F.to_date(event_time).alias("event_date"),
    ).write.insertInto("ratings")


def append_isolating(
    spark: SparkSession,
    events: list[StreamEvent],
    append: Callable[[SparkSession, list[StreamEvent]], None] = append_stream_events,
) -> list[tuple[StreamEvent, str]]:
    """Append `events`; returns those that cannot be stored, each with its reason, halving to find them."""
    if not events:
        return []
    try:
        append(spark, events)
        return []
    except Exception as e:
        if not is_record_error(e):
            raise
        if len(events) == 1:
            return [(events[0], f"cannot be stored: {type(e).__name__}: {str(e).splitlines()[0][:200]}")]
    half = len(events) // 2
    return append_isolating(spark, events[:half], append) + append_isolating(spark, events[half:], append)
