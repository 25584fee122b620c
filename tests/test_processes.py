"""readnext.processes.lower_priority: a service's lower priority holds against other sessions too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from readnext.config import PROJECT_ROOT


def _lowered(session: bool) -> str:
    """The autogroup line of a process in a new session that lowered its priority by 7."""
    code = (
        "from readnext.processes import lower_priority; "
        f"print(lower_priority(7, session={session}), open('/proc/self/autogroup').read())"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    ).stdout


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroup scheduling")
def test_a_service_in_its_own_session_lowers_the_session_too():
    """As deploy/service runs the batch service: its session's autogroup takes the nice value; without
    `session` only the process's own nice changes."""
    nice, *_, group_nice = _lowered(True).split()
    assert int(nice) >= 7 and group_nice == nice
    nice, *_, group_nice = _lowered(False).split()
    assert int(nice) >= 7 and group_nice == "0"
