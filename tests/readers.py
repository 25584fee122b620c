"""Load while something else happens: readers asking the app for recommendations, a service posting ratings."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Flask

from tests.waiting import wait_for

Answer = tuple[int, str | None, str]  # status, generation, source ("popular" with a notice: degraded)


class Readers:
    """Threads asking for reader 7's recommendations until the block ends; every answer kept.

    `by_thread` holds each thread's generations in the order answered, `sources` every 200's
    (time.monotonic(), source), `failures` every answer that was not a 200 (status, body).
    """

    def __init__(
        self,
        app: Flask,
        headers: dict[str, str],
        threads: int = 2,
        path: str = "/api/v1/users/7/recommendations?n=3",
        pause: float = 0.0,
    ) -> None:
        self.app, self.headers, self.path, self.pause = app, headers, path, pause
        self.by_thread: list[list[str | None]] = [[] for _ in range(threads)]
        self.failures: list[tuple[int, Any]] = []
        self.sources: list[tuple[float, str]] = []
        self._last: Answer | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(k,), daemon=True) for k in range(threads)]

    def _ask(self, k: int) -> None:
        client = self.app.test_client()
        while not self._stop.is_set():
            answer = client.get(self.path, headers=self.headers)
            if answer.status_code != 200:
                self.failures.append((answer.status_code, answer.get_data(as_text=True)[:300]))
                continue
            generation, source = answer.json["generation"], answer.json["source"]
            self.by_thread[k].append(generation)
            self.sources.append((time.monotonic(), source))
            self._last = (answer.status_code, generation, source)
            time.sleep(self.pause)

    def until(self, done: Callable[[Answer], bool], timeout: float = 120) -> Answer:
        """Wait for an answer that `done` accepts."""
        return wait_for(lambda: self._last if self._last and done(self._last) else None, "a matching answer", timeout)

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        self.until(lambda _: True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


class Poster:
    """A thread posting distinct ratings through POST /api/v1/ratings at a steady rate; every answer kept."""

    def __init__(self, app, headers: dict[str, str], pairs: list[tuple[int, int]], rate: float) -> None:
        self.app, self.headers, self.pairs, self.every = app, headers, pairs, 1 / rate
        self.answers: list[tuple[tuple[int, int, int], int, float]] = []  # (rating, status, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._post, daemon=True)

    def _post(self) -> None:
        client = self.app.test_client()
        rng = np.random.default_rng(5)
        for user, book in self.pairs:
            if self._stop.is_set():
                return
            rating = (user, book, int(rng.integers(1, 6)))
            t0 = time.monotonic()
            answer = client.post(
                "/api/v1/ratings",
                json={"user_id": user, "book_id": book, "rating": rating[2]},
                headers=self.headers,
            )
            took = time.monotonic() - t0
            self.answers.append((rating, answer.status_code, took))
            time.sleep(max(0.0, self.every - took))

    def statuses(self) -> Counter[int]:
        return Counter(status for _, status, _ in self.answers)

    def accepted(self) -> list[tuple[int, int, int]]:
        return [rating for rating, status, _ in self.answers if status == 202]

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
