"""deploy.supervise: a failing job is restarted with back-off, the crash loop is visible, a stop stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from deploy.supervise import describe
from readnext.config import PROJECT_ROOT
from tests.waiting import wait_for


def _supervise(tmp_path, name, *command):
    env = dict(
        os.environ,
        READNEXT_STACK_STATE_DIR=str(tmp_path),
        READNEXT_SUPERVISOR_BACKOFF_S="0.2",
        READNEXT_SUPERVISOR_BACKOFF_MAX_S="0.4",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.supervise", name, "--", *command],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, tmp_path / "run" / f"{name}.status"


def _status(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_a_failing_job_is_restarted_with_back_off_and_the_loop_is_visible(tmp_path):
    proc, status = _supervise(tmp_path, "crashy", sys.executable, "-c", "import sys; sys.exit(3)")
    wait_for(lambda: _status(status).get("restarts", 0) >= 3, "three restarts of a job that exits with code 3")
    seen = _status(status)
    assert [f["code"] for f in seen["failures"]][:3] == [3, 3, 3]
    assert seen["last_exit"] == 3 and seen["supervisor_pid"] == proc.pid
    assert "last failure: exit code 3" in describe(status), "what deploy/service NAME status prints"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "exited with code 3; restarting in" in out
    assert _status(status)["state"] == "stopped"


def test_stopping_the_supervisor_stops_its_job(tmp_path):
    proc, status = _supervise(tmp_path, "sleepy", sys.executable, "-c", "import time; time.sleep(600)")
    child = wait_for(lambda: _status(status).get("child_pid"), "the job to start")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), "the job to end", timeout=10)
    assert _status(status)["restarts"] == 0, "a stop is not a failure"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
