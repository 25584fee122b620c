"""python -m deploy.supervise NAME -- COMMAND...: run a long-running process, restarting it when it fails.

A process that exits on its own with an error is started again after a back-off that doubles
with each failure in a row ([supervisor] backoff_s up to backoff_max_s) and resets once a run
has lasted stable_s. Every restart is logged and counted in <state_dir>/run/NAME.status (JSON),
which `deploy/service NAME status` shows, so a crash loop is visible. SIGTERM or SIGINT stops
the child (SIGTERM, then SIGKILL after stop_timeout_s) and then the supervisor.
A clean exit (code 0) ends supervision: the process finished on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from readnext import logs
from readnext.config import load_config

log = logging.getLogger("deploy.supervise")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Supervisor:
    def __init__(self, name: str, command: list[str], status_file: Path) -> None:
        self.config = load_config().supervisor
        self.name, self.command, self.status_file = name, command, status_file
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.status: dict[str, object] = {"name": name, "supervisor_pid": os.getpid(), "restarts": 0, "failures": []}

    def _write(self, **changes: object) -> None:
        self.status.update(changes)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status))
        tmp.replace(self.status_file)

    def _say(self, message: str) -> None:
        log.info("supervisor %s: %s", self.name, message)

    def stop(self, signum: int, frame: object) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()

    def run(self) -> int:
        backoff = self.config.backoff_s
        while not self.stopping.is_set():
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            self._write(state="running", child_pid=self.child.pid, started_at=_now())
            code = self._wait()
            if self.stopping.is_set() or code == 0:
                self._write(state="stopped", child_pid=None, last_exit=code)
                return 0
            if time.monotonic() - started >= self.config.stable_s:
                backoff = self.config.backoff_s
            failures = [*self.status["failures"], {"at": _now(), "code": code}][-20:]  # type: ignore[misc]
            self._write(state="backing-off", child_pid=None, last_exit=code, failures=failures)
            self._say(f"exited with code {code}; restarting in {backoff:.0f} s")
            if self.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.config.backoff_max_s)
            self._write(restarts=int(self.status["restarts"]) + 1)  # type: ignore[call-overload]
        self._write(state="stopped", child_pid=None)
        return 0

    def _wait(self) -> int:
        assert self.child is not None
        while True:
            try:
                return self.child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if self.stopping.is_set():
                    try:
                        return self.child.wait(timeout=self.config.stop_timeout_s)
                    except subprocess.TimeoutExpired:
                        self.child.kill()
                        return self.child.wait()


def describe(status_file: Path) -> str:
    """One line for `deploy/service NAME status`: state, restarts, the last failure."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return ""
    failures = status.get("failures") or []
    last = f"; last failure: exit code {failures[-1]['code']} at {failures[-1]['at']}" if failures else ""
    return f"{status.get('state')}, restarts {status.get('restarts', 0)}{last}"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "status":
        print(describe(load_config().stack.state_dir / "run" / f"{argv[1]}.status"))
        return 0
    if len(argv) < 3 or argv[1] != "--":
        print(
            "usage: python -m deploy.supervise NAME -- COMMAND... | python -m deploy.supervise status NAME",
            file=sys.stderr,
        )
        return 2
    name, command = argv[0], argv[2:]
    config = load_config()
    logs.configure(config)  # its lines share the log file, and the format, of the process it runs
    status_file = config.stack.state_dir / "run" / f"{name}.status"
    status_file.parent.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(name, command, status_file)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
