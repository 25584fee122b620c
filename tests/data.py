"""Small goodbooks-shaped data made in the test, with taste structure that a recommender can learn."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from readnext.config import PROJECT_ROOT

GENRES = 5


def taste_ratings(seed: int, users: int = 240, books: int = 150, per_user: int = 30) -> list[tuple[int, int, int]]:
    """Readers love one genre (book_id % GENRES) and rate it 4-5; other books get 1-3 and fewer reads."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, books + 1)
    rows = []
    for user in range(1, users + 1):
        genre = user % GENRES
        weights = np.where(ids % GENRES == genre, 6.0, 1.0)
        chosen = rng.choice(ids, size=per_user, replace=False, p=weights / weights.sum())
        for book in chosen:
            liked = book % GENRES == genre
            rows.append((user, int(book), int(rng.integers(4, 6) if liked else rng.integers(1, 4))))
    return rows


def write_ratings(path: Path, rows: list[tuple], header: tuple[str, ...] = ("user_id", "book_id", "rating")) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_books(path: Path, books: int = 150) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "book_id",
                "goodreads_book_id",
                "work_id",
                "authors",
                "original_publication_year",
                "title",
                "average_rating",
                "image_url",
                "small_image_url",
            ]
        )
        for b in range(1, books + 1):
            writer.writerow(
                [
                    b,
                    1000 + b,
                    2000 + b,
                    f"Author {b % 7}",
                    f"{1990 + b % 30}.0",
                    f'Book {b}, "genre {b % GENRES}"',
                    3.5,
                    f"https://example.org/{b}.jpg",
                    "",
                ]
            )
    return path


def batch_on_small_data(folder: Path, env: dict[str, str], command: str, seed: int, users: int) -> None:
    """Write a small goodbooks-shaped folder (60 books) and run `python -m batch_layer COMMAND --data` on it."""
    data = folder / "data"
    data.mkdir()
    write_ratings(data / "ratings.csv", taste_ratings(seed=seed, users=users, books=60, per_user=12))
    write_books(data / "books.csv", books=60)
    done = subprocess.run(
        [sys.executable, "-m", "batch_layer", command, "--data", str(data)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
