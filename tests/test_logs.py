"""Structured logs: one JSON object per line with the request id (also in the response) and the generation."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from readnext import logs
from readnext.config import LoggingConfig, load_config
from serving_layer.app import create_app


@pytest.fixture
def root_handlers():
    """The test configures the root logger as a process would; pytest's own handlers come back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_request_id_of_the_response_and_the_process_context(root_handlers, capsys):
    config = dataclasses.replace(load_config(), logging=LoggingConfig("json", "INFO"))
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
