"""Stage logging: every stage of a batch run logs one line at its start and at its end (counts, duration).

A stage that runs longer than `PROGRESS_S` also logs a progress line every `PROGRESS_S`: the
Spark stage at work with its tasks done, and the time left, estimated from how long the same
stage took last time (kept in <state_dir>/run/stage-seconds.json).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from batch_layer.metrics import STAGE_SECONDS

log = logging.getLogger("batch_layer")
T = TypeVar("T")
PROGRESS_S = 10.0
HISTORY: Path | None = None


def remember_durations(path: Path) -> None:
    """Keep each stage's last duration in `path`, for the time-left estimates of the next run."""
    global HISTORY
    HISTORY = path


def _history() -> dict[str, float]:
    try:
        return json.loads(HISTORY.read_text()) if HISTORY else {}
    except (OSError, ValueError):
        return {}


def _spark_progress() -> str:
    """The active Spark stages and their tasks done, from the status tracker of the running context."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context  # the active session is per thread; the context is not
    if context is None:
        return ""
    tracker = context.statusTracker()
    parts = []
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            parts.append(f"Spark stage {stage_id} ({info.name}) {info.numCompletedTasks}/{info.numTasks} tasks")
    return "; ".join(parts)


def _report_progress(name: str, t0: float, stop: threading.Event) -> None:
    last = _history().get(name)
    while not stop.wait(PROGRESS_S):
        elapsed = time.monotonic() - t0
        left = f", about {max(last - elapsed, 0):.0f} s left (last run: {last:.0f} s)" if last else ""
        spark = _spark_progress()
        log.info("stage %s: %.0f s%s%s", name, elapsed, f", {spark}" if spark else "", left)


@contextmanager
def stage(name: str, detail: object = "") -> Iterator[Callable[[T], T]]:
    """Log `name` on entry and exit; the yielded function records the stage's result for the log."""
    t0 = time.monotonic()
    result: dict[str, Any] = {}
    log.info("stage %s: start %s", name, detail)
    stop = threading.Event()
    progress = threading.Thread(target=_report_progress, args=(name, t0, stop), daemon=True)
    progress.start()

    def done(value: T) -> T:
        result["value"] = value
        return value

    try:
        yield done
    except BaseException:
        log.error("stage %s: failed after %.1f s", name, time.monotonic() - t0)
        raise
    finally:
        stop.set()
        progress.join()
    seconds = time.monotonic() - t0
    value = result.get("value")
    counts = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    log.info("stage %s: end in %.1f s %s", name, seconds, counts if counts is not None else "")
    STAGE_SECONDS.labels(name).set(seconds)
    if HISTORY is not None:
        HISTORY.parent.mkdir(parents=True, exist_ok=True)
        HISTORY.write_text(json.dumps({**_history(), name: round(seconds, 1)}))
