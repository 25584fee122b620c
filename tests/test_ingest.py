"""Importing into the master dataset: validation with reasons, idempotent re-import, column mapping."""

from __future__ import annotations

from batch_layer.ingest import DataFiles, RatingColumns, ingest
from tests.data import write_books, write_ratings


def _rejects(spark):
    return {(r.seq, r.reason) for r in spark.table("rejects").where("dataset = 'ratings'").collect()}


def test_validation_counts_and_keeps_every_rejected_row(spark, hive_db, tmp_path):
    books = write_books(tmp_path / "books.csv", books=20)
    ratings = tmp_path / "r.csv"
    ratings.write_text(
        "user_id,book_id,rating\n"
        "1,1,5\n"  # 0: superseded by row 5
        "1,2,4\n"  # 1: valid
        "2,1,9\n"  # 2: out of range
        "x,1,3\n"  # 3: bad user id
        "3,999,4\n"  # 4: unknown book
        "1,1,3\n"  # 5: valid, latest for (1, 1)
        "4,2,5,7\n"  # 6: too many fields
        "5,3,\n"  # 7: missing rating
        "6,3,0\n"  # 8: out of range
    )
    counts = ingest(spark, DataFiles(ratings=ratings, books=books))
    assert counts["books"].added == 20
    assert counts["ratings"].read == 9
    assert counts["ratings"].added == 2
    assert counts["ratings"].rejected == 7
    stored = {(r.user_id, r.book_id, r.rating, r.source) for r in spark.table("ratings").collect()}
    assert stored == {(1, 2, 4, "import"), (1, 1, 3, "import")}
    assert _rejects(spark) == {
        (0, "duplicate (user, book): superseded by a later row of the same file"),
        (2, "rating outside 1-5"),
        (3, "user_id is not a positive integer"),
        (4, "unknown book id"),
        (6, "malformed row"),
        (7, "rating is not an integer"),
        (8, "rating outside 1-5"),
    }

    again = ingest(spark, DataFiles(ratings=ratings, books=books))
    assert again["ratings"].added == 0 and again["ratings"].already_present == 2 and again["ratings"].rejected == 0
    assert spark.table("ratings").count() == 2
    assert spark.table("rejects").where("dataset = 'ratings'").count() == 7


def test_any_ratings_csv_with_a_column_mapping(spark, hive_db, tmp_path):
    books = write_books(tmp_path / "books.csv", books=10)
    other = write_ratings(
        tmp_path / "other.csv", [("a", 7, 1, 4, "2020"), ("b", 8, 2, 5, "2021")], ("x", "reader", "item", "stars", "t")
    )
    counts = ingest(
        spark, DataFiles(ratings=other, books=books), RatingColumns(user="reader", book="item", rating="stars")
    )
    assert counts["ratings"].added == 2
    assert {(r.user_id, r.book_id, r.rating) for r in spark.table("ratings").collect()} == {(7, 1, 4), (8, 2, 5)}


def test_data_folder_finds_the_shared_slice_by_name(tmp_path):
    (tmp_path / "ratings_5pct_users.csv").write_text("user_id,book_id,rating\n")
    (tmp_path / "books.csv").write_text("book_id\n")
    files = DataFiles.in_folder(tmp_path)
    assert files.ratings.name == "ratings_5pct_users.csv" and files.books == tmp_path / "books.csv"
    assert files.tags is None
