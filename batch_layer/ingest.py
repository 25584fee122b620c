"""Import goodbooks-10k files into the master dataset, validating every row.

Validation rules for ratings (each refused row goes to `rejects` with its reason): malformed
row, then `readnext.master_dataset.rating_rules` (a non-integer or out-of-range id or rating,
the bounds of the event schema every writer follows), a book id not in `books`, and
duplicate (user, book) pairs within a file, where the latest row in file order wins and the
earlier ones are refused as superseded. Re-importing a file adds nothing twice: ratings already
imported with the same (user, book, rating) and rejects already recorded are skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batch_layer.stages import stage
from readnext import master_dataset

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"


@dataclass(frozen=True)
class RatingColumns:
    """Which CSV columns hold the user, the book and the rating (any ratings CSV can be mapped)."""

    user: str = "user_id"
    book: str = "book_id"
    rating: str = "rating"


@dataclass(frozen=True)
class ImportCounts:
    read: int
    added: int
    already_present: int
    rejected: int


def _read_strings(spark: SparkSession, path: Path, columns: list[str]) -> DataFrame:
    """Read a headed CSV with every column as text plus the corrupt-row column and the row's order."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    header = spark.read.option("header", True).csv(str(path)).columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(header)}")
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())])
    frame = (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .option("escape", '"')
        .schema(schema)
        .csv(str(path))
    )
    return frame.withColumn("seq", F.monotonically_increasing_id()).withColumn("origin", F.lit(path.name))


def _int(col: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(col).try_cast("int")


def _raw(columns: list[str]) -> Column:
    from pyspark.sql import functions as F

    return F.coalesce(F.col(CORRUPT), F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in columns]))


def _first_problem(checks: list[tuple[Column, str]]) -> Column:
    """The reason of the first failing check, or null for a valid row."""
    from pyspark.sql import functions as F

    reason = F.lit(None).cast("string")
    for failed, why in reversed(checks):
        reason = F.when(failed, F.lit(why)).otherwise(reason)
    return reason


def _record_rejects(spark: SparkSession, rejected: DataFrame, dataset: str) -> int:
    """Append refused rows to `rejects`, skipping those a previous import of the same file recorded."""
    from pyspark.sql import functions as F

    known = spark.table("rejects").where(F.col("dataset") == dataset).select("origin", "seq", "reason")
    new = (
        rejected.join(known, ["origin", "seq", "reason"], "left_anti")
        .select("origin", "seq", "raw", "reason", F.current_timestamp().alias("rejected_at"), F.lit(dataset))
        .cache()
    )
    count = new.count()
    if count:
        new.write.insertInto("rejects")
    new.unpersist()
    return count


def import_ratings(spark: SparkSession, path: Path, columns: RatingColumns = RatingColumns()) -> ImportCounts:
    """Validate a ratings CSV and append its new ratings to the master dataset (source = 'import')."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [columns.user, columns.book, columns.rating]
    raw = _read_strings(spark, path, names).cache()
    book_ids = spark.table("books").select(F.col("book_id").alias("_known_book"))
    have_books = book_ids.limit(1).count() > 0
    typed = raw.select(
        "*",
        _int(columns.user).alias("_user"),
        _int(columns.book).alias("_book"),
        _int(columns.rating).alias("_rating"),
    )
    if have_books:
        typed = typed.join(F.broadcast(book_ids), typed["_book"] == book_ids["_known_book"], "left")
    else:
        log.warning("books table is empty: book ids are not checked (import books.csv first)")
        typed = typed.withColumn("_known_book", F.col("_book"))
    checks = [
        (F.col(CORRUPT).isNotNull(), "malformed row"),
        *master_dataset.rating_rules(F.col("_user"), F.col("_book"), F.col("_rating"), tuple(names)),
        (F.col("_known_book").isNull(), "unknown book id"),
    ]
    latest_first = Window.partitionBy("_user", "_book").orderBy(F.col("seq").desc())
    checked = typed.withColumn("reason", _first_problem(checks))
    # Cached: the kept rows, their count and the superseded rejects all read the one window.
    valid = checked.where(F.col("reason").isNull()).withColumn("_rank", F.row_number().over(latest_first)).cache()
    superseded = valid.where(F.col("_rank") > 1).withColumn(
        "reason", F.lit("duplicate (user, book): superseded by a later row of the same file")
    )
    rejected = checked.where(F.col("reason").isNotNull()).unionByName(superseded.drop("_rank"))
    keep = valid.where(F.col("_rank") == 1).select(
        F.col("_user").alias("user_id"),
        F.col("_book").alias("book_id"),
        F.col("_rating").alias("rating"),
        "seq",
        "origin",
    )
    existing = spark.table("ratings").where(F.col("source") == "import").select("user_id", "book_id", "rating")
    new = keep.join(existing, ["user_id", "book_id", "rating"], "left_anti").cache()
    read = raw.count()
    kept = keep.count()
    added = new.count()
    if added:
        master_dataset.append(new, F.current_timestamp(), "import")
    rejected_count = _record_rejects(
        spark, rejected.select("origin", "seq", _raw(names).alias("raw"), "reason"), "ratings"
    )
    new.unpersist()
    valid.unpersist()
    raw.unpersist()
    return ImportCounts(read=read, added=added, already_present=kept - added, rejected=rejected_count)


def import_books(spark: SparkSession, path: Path) -> ImportCounts:
    """Replace the `books` snapshot with a validated books.csv."""
    from pyspark.sql import functions as F

    ints = ["book_id", "goodreads_book_id", "work_id"]
    raw = _read_strings(spark, path, ["book_id", "title", "authors"]).cache()
    checks = [
        (F.col(CORRUPT).isNotNull(), "malformed row"),
        (_int("book_id").isNull() | (_int("book_id") <= 0), "book_id is not a positive integer"),
        (F.col("title").isNull(), "title missing"),
    ]
    checked = raw.withColumn("reason", _first_problem(checks))
    optional = {c: F.col(c) if c in raw.columns else F.lit(None) for c in raw.columns}

    def col(name: str, kind: str) -> Column:
        return (optional.get(name, F.lit(None))).try_cast(kind).alias(name)

    books = checked.where(F.col("reason").isNull()).select(
        *[col(c, "int") for c in ints],
        col("isbn", "string"),
        col("authors", "string"),
        F.col("original_publication_year").try_cast("double").cast("int").alias("original_publication_year")
        if "original_publication_year" in raw.columns
        else F.lit(None).cast("int").alias("original_publication_year"),
        col("original_title", "string"),
        col("title", "string"),
        col("language_code", "string"),
        col("average_rating", "double"),
        col("ratings_count", "bigint"),
        col("image_url", "string"),
        col("small_image_url", "string"),
    )
    books = books.dropDuplicates(["book_id"])
    added = books.count()
    books.write.insertInto("books", overwrite=True)
    rejected = _record_rejects(
        spark,
        checked.where(F.col("reason").isNotNull()).select(
            "origin", "seq", _raw(raw.columns[:3]).alias("raw"), "reason"
        ),
        "books",
    )
    read = raw.count()
    raw.unpersist()
    return ImportCounts(read=read, added=added, already_present=0, rejected=rejected)


def import_simple(
    spark: SparkSession, path: Path, table: str, int_columns: list[str], text_columns: list[str]
) -> ImportCounts:
    """Replace a small reference table (tags, book_tags, to_read) with a validated CSV."""
    from pyspark.sql import functions as F

    raw = _read_strings(spark, path, int_columns + text_columns).cache()
    checks = [(F.col(CORRUPT).isNotNull(), "malformed row")] + [
        (_int(c).isNull(), f"{c} is not an integer") for c in int_columns
    ]
    checked = raw.withColumn("reason", _first_problem(checks))
    rows = checked.where(F.col("reason").isNull()).select(
        *[_int(c).alias(c) for c in int_columns], *[F.col(c) for c in text_columns]
    )
    rows = rows.select(*spark.table(table).columns)
    added = rows.count()
    rows.write.insertInto(table, overwrite=True)
    names = int_columns + text_columns
    rejected = _record_rejects(
        spark,
        checked.where(F.col("reason").isNotNull()).select("origin", "seq", _raw(names).alias("raw"), "reason"),
        table,
    )
    read = raw.count()
    raw.unpersist()
    return ImportCounts(read=read, added=added, already_present=0, rejected=rejected)


@dataclass(frozen=True)
class DataFiles:
    """Paths of the goodbooks-10k files to import; only `ratings` is required."""

    ratings: Path
    books: Path | None = None
    tags: Path | None = None
    book_tags: Path | None = None
    to_read: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path, ratings: Path | None = None) -> DataFiles:
        """The goodbooks-10k files found in `folder` (ratings.csv, else the shared 5% slice)."""

        def found(name: str) -> Path | None:
            path = folder / name
            return path if path.is_file() else None

        chosen = ratings or found("ratings.csv") or found("ratings_5pct_users.csv")
        if chosen is None:
            raise FileNotFoundError(f"no ratings.csv (or ratings_5pct_users.csv) in {folder}")
        return cls(chosen, found("books.csv"), found("tags.csv"), found("book_tags.csv"), found("to_read.csv"))


def ingest(spark: SparkSession, files: DataFiles, columns: RatingColumns = RatingColumns()) -> dict[str, ImportCounts]:
    """Import every given file, books first so that ratings can be checked against them."""
    master_dataset.ensure(spark)
    spark.sql("SET hive.exec.dynamic.partition.mode=nonstrict")
    counts: dict[str, ImportCounts] = {}
    if files.books:
        with stage("import books", files.books) as done:
            counts["books"] = done(import_books(spark, files.books))
    if files.tags:
        with stage("import tags", files.tags) as done:
            counts["tags"] = done(import_simple(spark, files.tags, "tags", ["tag_id"], ["tag_name"]))
    if files.book_tags:
        with stage("import book_tags", files.book_tags) as done:
            counts["book_tags"] = done(
                import_simple(spark, files.book_tags, "book_tags", ["goodreads_book_id", "tag_id", "count"], [])
            )
    if files.to_read:
        with stage("import to_read", files.to_read) as done:
            counts["to_read"] = done(import_simple(spark, files.to_read, "to_read", ["user_id", "book_id"], []))
    with stage("import ratings", files.ratings) as done:
        counts["ratings"] = done(import_ratings(spark, files.ratings, columns))
    return counts
