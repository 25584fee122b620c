"""Logging of the long-running processes: text lines by default, one JSON object per line with
`[logging] format = "json"` (for a log shipper), each carrying the generation the process works
on and, in the serving layer, the request id that the response's `X-Request-Id` header also carries.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from readnext.config import Config

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTEXT: dict[str, Any] = {}


def set_context(**fields: Any) -> None:
    """Fields every later JSON line of this process carries (the generation it works on)."""
    _CONTEXT.update(fields)


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the process's context, the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_CONTEXT,
        }
        for field in ("request_id", "generation"):
            if getattr(record, field, None):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(config: Config) -> None:
    """The root logger writes to stderr in the configured format, at the configured level."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if config.logging.format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.logging.level)
