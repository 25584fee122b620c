"""The downloader against a local HTTP server, and the generator of goodbooks-shaped data."""

from __future__ import annotations

import csv
import functools
import http.server
import threading
from collections import Counter

import pytest

from batch_layer.download import DownloadError, download
from batch_layer.generate import generate
from tests.data import taste_ratings, write_ratings


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_row_counts_and_skips_complete_files(http_folder, tmp_path):
    served, url = http_folder
    (served / "books.csv").write_text("book_id,title\n1,A\n2,B\n")
    (served / "tags.csv").write_text("tag_id,tag_name\n0,x\n")
    target = tmp_path / "data"
    paths = download(target, url, expected={"books.csv": 2, "tags.csv": 1})
    assert (target / "books.csv").read_text() == (served / "books.csv").read_text()
    assert set(paths) == {"books.csv", "tags.csv"}
    (served / "books.csv").unlink()
    assert download(target, url, expected={"books.csv": 2})["books.csv"] == target / "books.csv"


def test_download_refuses_a_short_file_and_explains_a_missing_one(http_folder, tmp_path):
    served, url = http_folder
    (served / "ratings.csv").write_text("user_id,book_id,rating\n1,1,5\n")
    with pytest.raises(DownloadError, match="has 1 data rows, expected 3"):
        download(tmp_path / "d", url, expected={"ratings.csv": 3})
    assert not list((tmp_path / "d").iterdir()), "no partial file is left behind"
    with pytest.raises(DownloadError, match="DATA=folder"):
        download(tmp_path / "d", url, expected={"to_read.csv": 3})


def test_generator_resamples_real_histories(tmp_path):
    source_rows = taste_ratings(seed=5, users=50, books=80, per_user=20)
    source = write_ratings(tmp_path / "source.csv", source_rows)
    out = tmp_path / "big.csv"
    written = generate(source, out, users=400, seed=1)
    with out.open() as f:
        rows = [(int(u), int(b), int(r)) for u, b, r in list(csv.reader(f))[1:]]
    assert len(rows) == written
    assert {u for u, _, _ in rows} == set(range(1, 401))
    assert {b for _, b, _ in rows} <= {b for _, b, _ in source_rows}
    assert all(1 <= r <= 5 for _, _, r in rows)
    assert 0.8 * 20 * 400 < written < 0.97 * 20 * 400, "about 90% of each copied history is kept"
    assert len({(u, b) for u, b, _ in rows}) == len(rows), "no reader rates a book twice"
    share = Counter(r for _, _, r in rows)
    source_share = Counter(r for _, _, r in source_rows)
    assert abs(share[5] / len(rows) - source_share[5] / len(source_rows)) < 0.05
    assert generate(source, tmp_path / "again.csv", users=400, seed=1) == written
    assert (tmp_path / "again.csv").read_text() == out.read_text(), "same seed, same data"
