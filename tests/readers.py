"""Readers served while something else happens: threads that keep asking the app for recommendations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from tests.waiting import wait_for

Answer = tuple[int, str | None, str]  # status, generation, source ("popular" with a notice: degraded)


class Readers:
    """Threads asking for reader 7's recommendations until the block ends; every answer kept.

    `by_thread` holds each thread's generations in the order answered, `sources` every 200's
    (time.monotonic(), source), `failures` every answer that was not a 200 (status, body).
    """

    def __init__(
        self, app: Flask, headers: dict[str, str], threads: int = 2, path: str = "/api/v1/users/7/recommendations?n=3"
    ) -> None:
        self.app, self.headers, self.path = app, headers, path
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
