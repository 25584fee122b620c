"""Rate limits: per client address and per account, counted where every web-server worker sees the same count.

Flask-Limiter counts in fixed windows in memcached (the stack's, `[stack] memcached_port`, or
`[limits] storage_uri`): a counter with an expiry is all a window needs, memcached keeps it in
memory across worker processes and restarts of the web server, and nothing of it needs to last.
While the storage is away each worker counts in its own memory. A refused request is 429 with
`Retry-After` (JSON under /api/).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from readnext.accounts import normal_name
from readnext.config import Config
from serving_layer import auth


def storage_uri(config: Config) -> str:
    return config.limits.storage_uri or f"memcached://127.0.0.1:{config.stack.memcached_port}"


def _username() -> str:
    """The account a sign-in names (form or JSON body): sign-ins are limited per account as well as per client."""
    named = request.form.get("username")
    if named is None:
        body = request.get_json(silent=True)
        named = body.get("username") if isinstance(body, dict) else None
    return f"account:{normal_name(str(named or ''))[:64]}"


def _session_reader() -> str:
    return f"reader:{session.get('reader')}"


def _writer() -> str:
    found = auth.principal()
    return found.writer if found else "nobody"


def install(app: Flask, config: Config) -> None:
    """Wrap the limited views of `app` (API and web UI) with their limits from `[limits]`."""
    cfg = config.limits
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri(config),
        strategy="fixed-window",
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        key_prefix=config.hbase.table_prefix,
        enabled=cfg.enabled,
    )
    app.extensions["readnext_limiter"] = limiter  # Flask-Limiter's wrappers hold it weakly
    endpoints: set[str] = set()

    @limiter.request_filter
    def unlimited() -> bool:
        """Endpoints without a limit skip Flask-Limiter's resolution of limits (0.1 ms of a known reader's 1 ms)."""
        return request.endpoint not in endpoints

    def limited(
        endpoint: str, value: str, key: Callable[[], str] = get_remote_address, when: Callable[[], bool] | None = None
    ) -> None:
        exempt = (lambda: not when()) if when else None
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = limiter.limit(value, key_func=key, exempt_when=exempt)(view)
        endpoints.add(endpoint)

    def has_query() -> bool:
        return bool(request.args.get("q"))

    def is_reader() -> bool:
        return auth.principal_kind() == "reader"

    def is_key() -> bool:
        return auth.principal_kind() == "key"

    def not_key() -> bool:
        return auth.principal_kind() != "key"

    for endpoint in ("api.issue_token", "web.signin"):
        limited(endpoint, cfg.sign_in_per_client)
        limited(endpoint, cfg.sign_in_per_account, _username)
    limited("web.signup", cfg.sign_up_per_client)
    limited("api.post_rating", cfg.ratings_per_client, when=not_key)
    limited("api.post_rating", cfg.ratings_per_reader, _writer, when=is_reader)
    limited("api.post_rating", cfg.ratings_per_key, _writer, when=is_key)
    limited("web.rate", cfg.ratings_per_client)
    limited("web.rate", cfg.ratings_per_reader, _session_reader)
    limited("api.search", cfg.search_per_client)
    limited("web.home", cfg.search_per_client, when=has_query)
    limited("api.anonymous_recommendations", cfg.fold_in_per_client)
    limited("api.system_status", cfg.status_per_client)
    limited("web.status_page", cfg.status_per_client)
