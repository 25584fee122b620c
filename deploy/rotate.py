"""python -m deploy.rotate FILE: copy standard input to FILE, rotating it by size, so no log grows without bound.

The stack's servers and the layers' long-running processes write their output through it
(`deploy/stack`, `deploy/service`): FILE is always the newest part, FILE.1 to FILE.N the older
ones, each at most `[logging] max_bytes`, N = `[logging] backups`. `--fresh` starts a new FILE
(the previous run's output becomes FILE.1). It ends when its input closes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from readnext.config import load_config


def copy(lines: object, path: Path, max_bytes: int, backups: int, fresh: bool = False) -> None:
    """Write each line of `lines` (bytes) to `path` through the standard library's size-rotating handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", errors="replace")
    handler.terminator = ""  # each line keeps its own newline
    if fresh and path.exists() and path.stat().st_size:
        handler.doRollover()
    try:
        for line in lines:  # type: ignore[attr-defined]
            handler.emit(logging.makeLogRecord({"msg": line.decode("utf-8", "replace"), "levelno": logging.INFO}))
            handler.flush()
    finally:
        handler.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.rotate", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--fresh", action="store_true", help="start a new file; the previous one becomes FILE.1")
    args = parser.parse_args(argv)
    settings = load_config().logging
    copy(sys.stdin.buffer, args.file, settings.max_bytes, settings.backups, args.fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
