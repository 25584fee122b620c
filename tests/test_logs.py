"""Logs: one JSON object per line with the request id and the generation; every log file rotates by size."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import pytest

from deploy.stack import Service
from readnext import logs
from readnext.config import load_config
from serving_layer.app import create_app
from tests.waiting import wait_for


@pytest.fixture
def root_handlers():
    """The test configures the root logger as a process would; pytest's own handlers come back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id_of_the_response_and_the_process_context(root_handlers, capsys):
    base = load_config()
    config = dataclasses.replace(base, logging=dataclasses.replace(base.logging, format="json", level="INFO"))
    app = create_app(config)

    def speak() -> str:
        app.logger.warning("rated %s books", 3)
        return "ok"

    app.add_url_rule("/speak", view_func=speak)
    client = app.test_client()
    reply = client.get("/speak", headers={"X-Request-Id": "abc-123"})
    assert reply.headers["X-Request-Id"] == "abc-123"
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "rated 3 books" and line["level"] == "WARNING" and line["request_id"] == "abc-123"
    minted = client.get("/healthz", headers={"X-Request-Id": "not a token; <script>"}).headers["X-Request-Id"]
    assert len(minted) == 16 and minted.isalnum(), "an unusable id is replaced, never echoed"
    logs.set_context(generation="20260101T000000000Z")
    logging.getLogger("speed_layer").info("speed batch 7: 3 events")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["generation"] == "20260101T000000000Z" and line["logger"] == "speed_layer"


def test_a_stack_service_writes_its_output_through_a_log_that_rotates(tmp_path, monkeypatch):
    """50 kB of output at a 2,000-byte limit: the file and two older parts, in order, the newest last."""
    monkeypatch.setenv("READNEXT_LOGGING_MAX_BYTES", "2000")
    monkeypatch.setenv("READNEXT_LOGGING_BACKUPS", "2")
    lines = 2000
    chatter = Service(
        name="chatter",
        address="127.0.0.1:1",
        command=[sys.executable, "-c", f"for i in range({lines}): print(f'line {{i:05d}}', flush=True)"],
        ready=lambda: True,
        prepare=lambda: None,
        state_dir=tmp_path,
    )
    chatter.launch()
    log = chatter.log_file
    wait_for(lambda: log.exists() and f"line {lines - 1:05d}" in log.read_text(), "the last line in the newest part")
    parts = sorted(p.name for p in log.parent.iterdir())
    assert parts == ["chatter.log", "chatter.log.1", "chatter.log.2"]
    assert all(p.stat().st_size <= 2000 for p in log.parent.iterdir())
    kept = [
        int(line.split()[1])
        for part in ("chatter.log.2", "chatter.log.1", "chatter.log")
        for line in (log.parent / part).read_text().splitlines()
        if line.startswith("line ")
    ]
    assert kept == list(range(lines - len(kept), lines)), "the newest lines, none lost between the parts"
