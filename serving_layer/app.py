"""Flask app factory: the JSON API blueprint, health probes, JSON errors and security headers."""

from __future__ import annotations

import logging
import os
import re
import secrets
from typing import Any

from flask import Flask, g, has_request_context, jsonify, request
from flask.logging import default_handler
from werkzeug.exceptions import HTTPException

from readnext import logs
from readnext.clients import kafka_admin
from readnext.config import Config, load_config
from readnext.views import speed_table
from serving_layer import auth, limits, metrics
from serving_layer.api import api
from serving_layer.api import http_error as api_http_error
from serving_layer.state import ServingState
from serving_layer.web import web


def _local_secret(config: Config) -> str:
    """A random session key kept in the state folder, shared by every worker on this machine."""
    path = config.stack.state_dir / "serving.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class _RequestContext(logging.Filter):
    """Puts the request id and the served generation on every log record made while a request is handled."""

    def __init__(self, state: ServingState) -> None:
        super().__init__()
        self.state = state

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        record.generation = self.state.generation
        return True


def create_app(config: Config | None = None) -> Flask:
    config = config or load_config()
    app = Flask(__name__)
    state = ServingState(config)
    if config.logging.format == "json":  # under the web server, one JSON object per line on stderr
        logs.configure(config)
        app.logger.removeHandler(default_handler)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_RequestContext(state))
    app.config["MAX_CONTENT_LENGTH"] = config.serving.max_body_bytes
    app.json.sort_keys = False
    app.secret_key = config.serving.secret_key or _local_secret(config)
    app.config.update(
        SECRET_KEY_FALLBACKS=[k.strip() for k in config.serving.secret_key_fallbacks.split(",") if k.strip()],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.serving.secure_cookies,
    )
    app.extensions["readnext"] = state
    auth.install(app, config.serving.token_cache_s)
    # No routing redirects: a merged `//` or an added slash would be redirected to a URL built from
    # the client's Host header.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.register_blueprint(api)
    app.register_blueprint(web)
    limits.install(app, config)
    metrics.install(app, state)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "alive"})

    @app.get("/readyz")
    def readyz() -> Any:
        state: ServingState = app.extensions["readnext"]
        problems = []
        try:
            if state.snapshot() is None:
                problems.append("no model generation is published yet")
        except Exception as e:  # noqa: BLE001 - report, do not raise, from a probe
            problems.append(f"model: {e}")
        setup = "run 'python -m deploy.init' (deploy/stack start does)"
        try:
            if speed_table(config).encode() not in state.hbase(lambda conn: conn.tables()):
                problems.append(f"HBase table {speed_table(config)} is missing: {setup}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"HBase unreachable: {e}")
        try:
            admin = kafka_admin(config, bootstrap_timeout_ms=3000, request_timeout_ms=3000)  # a probe answers fast
            try:
                if config.kafka.ratings_topic not in admin.list_topics():
                    problems.append(f"Kafka topic {config.kafka.ratings_topic} is missing: {setup}")
            finally:
                admin.close()
        except Exception as e:  # noqa: BLE001
            problems.append(f"Kafka unreachable: {e}")
        if problems:
            return jsonify({"status": "unavailable", "problems": problems}), 503
        return jsonify({"status": "ready", "generation": state.snapshot().model.generation})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not request.path.startswith("/api/"):
            return error
        return api_http_error(error)

    @app.before_request
    def request_id() -> None:
        """The client's X-Request-Id when it is a plain token, else a new one; returned in the response."""
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if _REQUEST_ID.fullmatch(sent) else secrets.token_hex(8)

    @app.after_request
    def security_headers(response: Any) -> Any:
        if "request_id" in g:
            response.headers["X-Request-Id"] = g.request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'",
        )
        return response

    return app


def create_worker_app() -> Flask:
    """The app of one web-server worker (`python -m serving_layer serve`), ready before its first request.

    It loads the served generation and starts following the ratings topic first: otherwise a
    worker's first requests wait for the catalog's load (about a second) and read every speed row
    until the follower is ready. A store that is away does not stop the worker: requests load it.
    """
    app = create_app()
    try:
        app.extensions["readnext"].warm_up()
    except Exception:  # noqa: BLE001 - the worker still starts, and answers 503 until the stores are back
        app.logger.exception("loading the served generation failed; requests will retry")
    return app
