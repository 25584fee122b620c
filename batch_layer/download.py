"""Download goodbooks-10k from its public home, with progress shown and row counts checked."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/zygmuntz/goodbooks-10k/master/"
# Data rows (header excluded) of each file of the published dataset.
EXPECTED_ROWS = {
    "books.csv": 10_000,
    "ratings.csv": 5_976_479,
    "tags.csv": 34_252,
    "book_tags.csv": 999_912,
    "to_read.csv": 912_705,
}


class DownloadError(RuntimeError):
    """The dataset could not be fetched or is not what it should be; the message says what to do."""


def _progress(name: str, done: int, total: int | None, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6) / 1e6
    share = f"{100 * done / total:5.1f}% of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    print(f"\r  {name}: {share} ({rate:.1f} MB/s)", end="", file=sys.stderr, flush=True)


def _count_rows(path: Path) -> int:
    """Data rows of a CSV whose quoted fields hold no line breaks (true of goodbooks-10k)."""
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def download(
    folder: Path, base_url: str = DEFAULT_BASE_URL, expected: Mapping[str, int] = EXPECTED_ROWS, timeout_s: float = 30
) -> dict[str, Path]:
    """Fetch each file into `folder` (skipping files already complete) and check its row count."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in expected.items():
        path = folder / name
        if path.is_file() and _count_rows(path) == rows:
            print(f"  {name}: already here ({rows:,} rows)", file=sys.stderr)
            paths[name] = path
            continue
        part = path.with_suffix(path.suffix + ".part")
        url = base_url.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, part.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                started, done = time.monotonic(), 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    _progress(name, done, total, started)
            print(file=sys.stderr)
        except (urllib.error.URLError, OSError) as e:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"cannot download {url}: {e}. Without network access, copy goodbooks-10k's files into a "
                f"folder yourself and pass it as DATA=folder (make demo) or --data folder."
            ) from e
        got = _count_rows(part)
        if got != rows:
            part.unlink()
            raise DownloadError(f"{url} has {got:,} data rows, expected {rows:,}: incomplete or changed download")
        os.replace(part, path)
        paths[name] = path
    return paths
