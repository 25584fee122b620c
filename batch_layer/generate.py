"""Goodbooks-shaped ratings at any scale, by resampling real readers' histories.

Each generated reader copies the history of a real reader drawn at random, keeps each rating
with probability 0.9 and moves it one star up or down with probability 0.1, so the real
co-occurrence structure and rating distribution carry over while no two readers are identical.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

KEEP = 0.9
JITTER = 0.1


def _histories(source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(books, ratings, offsets): the source's ratings grouped by reader."""
    data = np.loadtxt(source, delimiter=",", skiprows=1, dtype=np.int64, usecols=(0, 1, 2), ndmin=2)
    order = np.argsort(data[:, 0], kind="stable")
    data = data[order]
    starts = np.flatnonzero(np.r_[True, data[1:, 0] != data[:-1, 0]])
    return data[:, 1], data[:, 2], np.r_[starts, len(data)]


def generate(source: Path, out: Path, users: int, seed: int = 0) -> int:
    """Write `users` readers' ratings to `out` (user_id,book_id,rating); returns the row count."""
    books, ratings, offsets = _histories(source)
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, len(offsets) - 1, size=users)
    rows = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "book_id", "rating"])
        for user, template in enumerate(templates, start=1):
            lo, hi = offsets[template], offsets[template + 1]
            keep = rng.random(hi - lo) < KEEP
            if not keep.any():
                keep[rng.integers(0, hi - lo)] = True
            stars = ratings[lo:hi][keep]
            moved = rng.random(len(stars)) < JITTER
            stars = np.clip(stars + moved * rng.choice([-1, 1], size=len(stars)), 1, 5)
            writer.writerows(zip([user] * len(stars), books[lo:hi][keep].tolist(), stars.tolist(), strict=True))
            rows += len(stars)
            if user % 10_000 == 0:
                print(f"\r  generated {user:,} of {users:,} readers ({rows:,} ratings)", end="", file=sys.stderr)
    print(f"\r  generated {users:,} readers, {rows:,} ratings into {out}", file=sys.stderr)
    return rows
