"""The master dataset: the one append to its `ratings` table, the stream's appends, the reads for training.

Its layout is hive/master_dataset.sql (`ratings`, `rejects`, `books`, `tags`, `book_tags`,
`to_read`); `RATINGS_COLUMNS` is the `ratings` layout every append writes, checked against the
DDL by tests/test_master_dataset.py. The rules a rating must follow are the event schema's
(readnext/schemas/rating_event.schema.json, read by readnext/events.py for the stream and the
API); `rating_rules` applies the same bounds to the rows of an imported file. Every rating,
imported or streamed, reaches `ratings` through `append`.

Stream appends skip (origin, seq) pairs already present, so a micro-batch replayed after a crash adds
nothing twice. A record whose conversion or write fails on its own account is set aside with its
reason (the caller dead-letters it) and the rest of the batch is stored; a failure that is not
about a record (the metastore or the file system away) propagates, so the caller retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspark.errors.exceptions.captured import ArithmeticException, DateTimeException, NumberFormatException

from readnext.events import MAX_ID, RATING_MAX, RATING_MIN, StreamEvent
from readnext.hive import ensure_tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

RATINGS_COLUMNS = ("user_id", "book_id", "rating", "event_time", "seq", "origin", "writer", "source", "event_date")
STREAM_SCHEMA = "user_id INT, book_id INT, rating INT, ts_ms BIGINT, seq BIGINT, origin STRING, writer STRING"
# Columns added to `ratings` since its first release, with their types: `ensure` adds them to older tables.
_ADDED_COLUMNS = {"writer": "STRING"}
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


def ensure(spark: SparkSession) -> None:
    """Create the master dataset's tables where missing, and give an older `ratings` the columns added since."""
    ensure_tables(spark, "master_dataset")
    present = set(spark.table("ratings").columns)
    missing = [f"{name} {kind}" for name, kind in _ADDED_COLUMNS.items() if name not in present]
    if missing:
        spark.sql(f"ALTER TABLE ratings ADD COLUMNS ({', '.join(missing)})")


def rating_rules(user: Column, book: Column, rating: Column, names: tuple[str, str, str]) -> list[tuple[Column, str]]:
    """(failed condition, reason) for an imported row's typed user, book and rating, checked in order."""
    user_name, book_name, rating_name = names
    return [
        (user.isNull() | (user <= 0) | (user > MAX_ID), f"{user_name} is not a positive integer"),
        (book.isNull() | (book <= 0) | (book > MAX_ID), f"{book_name} is not a positive integer"),
        (rating.isNull(), f"{rating_name} is not an integer"),
        (~rating.between(RATING_MIN, RATING_MAX), f"rating outside {RATING_MIN}-{RATING_MAX}"),
    ]


def append(frame: DataFrame, event_time: Column, source: str) -> None:
    """Append (user_id, book_id, rating, seq, origin[, writer]) rows stamped `event_time` to `ratings`."""
    from pyspark.sql import functions as F

    columns = {
        "user_id": F.col("user_id"),
        "book_id": F.col("book_id"),
        "rating": F.col("rating").cast("tinyint"),
        "event_time": event_time,
        "seq": F.col("seq"),
        "origin": F.col("origin"),
        "writer": F.col("writer") if "writer" in frame.columns else F.lit(None).cast("string"),
        "source": F.lit(source),
        "event_date": F.to_date(event_time),
    }
    frame.select(*[columns[name].alias(name) for name in RATINGS_COLUMNS]).write.insertInto("ratings")


def append_stream_events(spark: SparkSession, events: list[StreamEvent]) -> None:
    """Append events to `ratings` (source = 'stream'), skipping those already stored."""
    from pyspark.sql import functions as F

    new = spark.createDataFrame(
        [(e.user_id, e.book_id, e.rating, e.ts_ms, e.offset, e.origin, e.writer) for e in events], STREAM_SCHEMA
    )
    present = (
        spark.table("ratings")
        .where((F.col("source") == "stream") & F.col("origin").isin(sorted({e.origin for e in events})))
        .where(F.col("seq") >= min(e.offset for e in events))
        .select("origin", "seq")
    )
    append(new.join(present, ["origin", "seq"], "left_anti"), (F.col("ts_ms") / 1000).cast("timestamp"), "stream")


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


def latest_ratings(spark: SparkSession) -> DataFrame:
    """(user_id, book_id, rating, event_time): each reader's latest rating of each book, any source."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest_first = Window.partitionBy("user_id", "book_id").orderBy(
        F.col("event_time").desc(), F.col("source").desc(), F.col("seq").desc()
    )
    return (
        spark.table("ratings")
        .withColumn("_n", F.row_number().over(newest_first))
        .where(F.col("_n") == 1)
        .select("user_id", "book_id", F.col("rating").cast("int").alias("rating"), "event_time")
    )


def rejected_ratings(spark: SparkSession) -> int:
    """Imported rating rows refused so far (kept in `rejects` with their reason)."""
    return spark.table("rejects").where("dataset = 'ratings'").count()


def stream_offsets(spark: SparkSession) -> dict[str, int]:
    """The last Kafka offset stored per partition ("<topic>-<partition>"): how far a generation reaches."""
    from pyspark.sql import functions as F

    stream = spark.table("ratings").where(F.col("source") == "stream")
    return {r.origin: r.offset for r in stream.groupBy("origin").agg(F.max("seq").alias("offset")).collect()}
