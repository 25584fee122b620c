"""Who is asking, and what they may see and write: bearer tokens on the API, a reader's token in the web session.

Public data (books, search, popular, similar books, anonymous fold-in) needs nothing. A reader's
token reads and writes that reader's data only; a service key does what its scopes say
(readnext/accounts.py). No token where one is needed, or a token that is unknown, revoked or
expired, is 401 with `WWW-Authenticate: Bearer`; a valid token that may not do this is 403.
"""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from readnext.accounts import Accounts, Principal, Tokens
from serving_layer.state import serving_state

NEEDS_TOKEN = "this needs a bearer token: a reader's (POST /api/v1/tokens) or a service key's"


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, www_authenticate=WWWAuthenticate("bearer", {"realm": "readnext"}))


class PrincipalCache:
    """The principals of service keys checked in the last `ttl_s` seconds, in this worker only.

    Keys are what a trusted back end sends on every request; a reader's token is checked in HBase
    each time, so that a sign-out ends it on every worker at once. Only keys found valid are kept:
    a new key works at once everywhere, a revoked one is refused by every worker within `ttl_s`.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        return entry[1] if entry and time.monotonic() - entry[0] < self.ttl_s else None

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl_s > 0 and principal.kind == "key":  # valid keys only: as many entries as keys
            self._entries[token] = (time.monotonic(), principal)


def install(app: Any, ttl_s: float) -> None:
    app.extensions["readnext.principals"] = PrincipalCache(ttl_s)


def _principals() -> PrincipalCache:
    return current_app.extensions["readnext.principals"]


def lookup(token: str) -> Principal | None:
    """The principal a token speaks for (one HBase get unless checked lately), or None."""
    found = _principals().get(token)
    if found is None:
        state = serving_state()
        found = state.hbase(lambda conn: Tokens(conn, state.config).lookup(token))
        if found is not None:
            _principals().put(token, found)
    return found


def bearer_token() -> str | None:
    """The request's bearer token; 401 for an Authorization header of another shape."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def principal() -> Principal | None:
    """Who the request's bearer token speaks for (looked up once per request); None without a token."""
    if "principal" not in g:
        token = bearer_token()
        found = lookup(token) if token else None
        if token and found is None:
            raise _unauthorized("the token is unknown, revoked or expired")
        g.principal = found
    return g.principal


def required() -> Principal:
    found = principal()
    if found is None:
        raise _unauthorized(NEEDS_TOKEN)
    return found


def may_read(user_id: int) -> Principal:
    """The principal, when it may read reader `user_id`'s private data; 401 or 403 otherwise."""
    found = required()
    if not found.may_read(user_id):
        raise Forbidden(f"this token may not read reader {user_id}'s data")
    return found


def may_write(user_id: int) -> Principal:
    """The principal, when it may post ratings as reader `user_id`; 401 or 403 otherwise."""
    found = required()
    if not found.may_write(user_id):
        raise Forbidden(f"this token may not post ratings as reader {user_id}")
    return found


def principal_kind() -> str | None:
    """'reader', 'key' or None: which rate limits apply to the request."""
    found = principal()
    return found.kind if found else None


def sign_up(username: str, password: str) -> tuple[int, str]:
    """A new account's reader id and a token for it; AccountError when the name or the password will not do."""
    state = serving_state()

    def work(conn: Any) -> tuple[int, str]:
        reader = Accounts(conn, state.config).sign_up(username, password)
        return reader, Tokens(conn, state.config).issue_reader(reader)

    return state.hbase(work)


def sign_in(username: str, password: str) -> tuple[int, str] | None:
    """The reader id and a new token when the password is right, else None."""
    state = serving_state()

    def work(conn: Any) -> tuple[int, str] | None:
        reader = Accounts(conn, state.config).check(username, password)
        return None if reader is None else (reader, Tokens(conn, state.config).issue_reader(reader))

    return state.hbase(work)


def demo_sign_in(reader_id: int) -> str:
    """A token for any reader id, no password: only behind [serving] demo_sign_in."""
    state = serving_state()
    return state.hbase(lambda conn: Tokens(conn, state.config).issue_reader(reader_id))


def revoke(token: str) -> None:
    state = serving_state()
    state.hbase(lambda conn: Tokens(conn, state.config).revoke(token))
