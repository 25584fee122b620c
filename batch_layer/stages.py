"""Stage logging: every stage of a batch run logs its start, end, row counts and duration."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

log = logging.getLogger("batch_layer")
T = TypeVar("T")


@contextmanager
def stage(name: str, detail: object = "") -> Iterator[Callable[[T], T]]:
    """Log `name` on entry and exit; the yielded function records the stage's result for the log."""
    t0 = time.monotonic()
    result: dict[str, Any] = {}
    log.info("stage %s: start %s", name, detail)

    def done(value: T) -> T:
        result["value"] = value
        return value

    try:
        yield done
    except BaseException:
        log.error("stage %s: failed after %.1f s", name, time.monotonic() - t0)
        raise
    value = result.get("value")
    counts = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    log.info("stage %s: end in %.1f s %s", name, time.monotonic() - t0, counts if counts is not None else "")
