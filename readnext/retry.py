"""Retrying work that fails for reasons outside the record at hand (a server restarting)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("readnext.retry")


def with_retries(
    work: Callable[[], T],
    what: str,
    attempts: int,
    first_delay_s: float,
    give_up: Callable[[BaseException], bool] = lambda e: False,
) -> T:
    """Run `work`, retrying with doubling delays; errors that `give_up` accepts, and the last one, are raised."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as e:
            if give_up(e) or attempt == attempts:
                raise
            log.warning("%s failed (attempt %d of %d), retrying in %.1f s: %s", what, attempt, attempts, delay, e)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
