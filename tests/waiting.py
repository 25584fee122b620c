"""Waits tied to something observable, with a timeout that says what was waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from readnext.config import Config
from speed_layer.kafka_read import planned_offsets

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = 60, every: float = 0.3) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def master_timeout(config: Config) -> float:
    """How long the master-dataset query may take to append an event: a few of its triggers plus start-up."""
    return 90 + 4 * config.speed.master_trigger_s


def committed_events(checkpoint: Path) -> int:
    """Kafka events a query has committed, from its checkpoint: the offsets of its last committed batch."""
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")]
    if not commits:
        return 0
    offsets = planned_offsets(checkpoint, max(commits)) or {}
    return sum(sum(partitions.values()) for partitions in offsets.values())
