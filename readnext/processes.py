"""Processes of this machine: whether one still runs (pid files, what a killed one left), the memory of a tree."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except OSError:
        return True
    return state != "Z"


def rss_mb(pid: int) -> float:
    """Resident memory of one process; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (a JVM's children, the web server's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        total += rss_mb(current)
    return total


def lower_priority(steps: int, session: bool = False) -> int:
    """Run this process, and the children it starts, `steps` nice levels lower; returns the nice value.

    Where the kernel groups processes by session (autogroup scheduling, on by default in many
    kernels), nice only orders the processes of one session: a service that deploy/service starts
    in a session of its own then takes as much CPU as the streaming job's whole session, however
    nice it is. A batch run at nice 10 made the speed job's fold-in of 50 readers take 186 ms
    instead of 46 ms with its session's nice set too (docs/benchmarks.md). With `session`, the
    session's autogroup gets the same nice: only for a session that holds the service alone.
    """
    nice = os.nice(steps)
    group = Path("/proc/self/autogroup")
    if session and group.exists():
        with contextlib.suppress(OSError):  # a read-only /proc: the process's own nice still holds
            group.write_text(str(nice))
    return nice
