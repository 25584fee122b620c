"""Reader accounts, reader tokens and service keys in HBase: the one module that names their columns.

Tables (names carry the configured prefix, shown here as `readnext`):

- `readnext_accounts`, family `a`: row `name:<username>` holds `a:claim` (a counter: the sign-up
  that takes it to 1 owns the name, so two sign-ups never share one), `a:reader`, `a:password`
  (werkzeug's salted scrypt hash) and `a:created_ms`; row `reader:<id>` holds `a:name`; row
  `next-reader` holds `a:seq`, the counter that numbers new readers from
  `[accounts] first_reader_id` up.
- `readnext_tokens`, row key = SHA-256 of the token (hex). Family `r`, reader tokens (`r:reader`,
  `r:created_ms`), which HBase itself expires after `[accounts] token_ttl_s`; family `s`, service
  keys (`s:name`, `s:scopes`, `s:created_ms`), which last until revoked.

A token is 32 random bytes, so a fast hash of it is as safe to store as a slow one and a check
costs one HBase get. Only the hash is kept: the token itself is shown once, to its holder.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from readnext.config import Config
from readnext.events import MAX_ID
from readnext.views import family

SCOPES = {
    "ratings:write": "post ratings in any reader's name (an importer)",
    "readers:read": "read any reader's history, recommendations and estimates (a trusted back end)",
}
READER_PREFIX, KEY_PREFIX = "rnr_", "rns_"
USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{2,31}")
MAX_PASSWORD = 256
_NEXT_READER = b"next-reader"


def normal_name(username: str) -> str:
    """A username as it is stored and compared: without surrounding spaces, in lower case."""
    return username.strip().lower()


class AccountError(ValueError):
    """A sign-up or key request that cannot be granted; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for: a reader (their own data only) or a service key (its scopes)."""

    kind: str
    reader_id: int | None
    name: str
    scopes: frozenset[str]

    @property
    def writer(self) -> str:
        """What the rating events and the master dataset record as the author of a write."""
        return f"reader:{self.reader_id}" if self.kind == "reader" else f"key:{self.name}"

    def may_read(self, reader_id: int) -> bool:
        return self.reader_id == reader_id or "readers:read" in self.scopes

    def may_write(self, reader_id: int) -> bool:
        return self.reader_id == reader_id or "ratings:write" in self.scopes


@functools.cache
def _decoy(method: str) -> str:
    """A hash checked when a name is unknown, so that a wrong name costs what a wrong password does."""
    return generate_password_hash(secrets.token_hex(8), method=method)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).hexdigest().encode()


def accounts_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_accounts"


def tokens_table(config: Config) -> str:
    return f"{config.hbase.table_prefix}_tokens"


class Accounts:
    """Readers who signed up with a name and a password."""

    def __init__(self, conn: Any, config: Config) -> None:
        self.conn, self.name, self.config = conn, accounts_table(config), config.accounts

    def ensure(self) -> None:
        if self.name.encode() not in self.conn.tables():
            self.conn.create_table(self.name, {"a": family()})

    def sign_up(self, username: str, password: str) -> int:
        """A new reader id for a free username; AccountError when the name or the password will not do."""
        username = normal_name(username)
        if not USERNAME.fullmatch(username):
            raise AccountError("a username is 3 to 32 lower-case letters, digits, '.', '_' or '-'")
        if not self.config.min_password_length <= len(password) <= MAX_PASSWORD:
            raise AccountError(f"a password is {self.config.min_password_length} to {MAX_PASSWORD} characters")
        table = self.conn.table(self.name)
        row = f"name:{username}".encode()
        if table.counter_inc(row, b"a:claim") != 1:
            raise AccountError(f"the username {username} is taken")
        reader = self.config.first_reader_id + table.counter_inc(_NEXT_READER, b"a:seq") - 1
        if reader > MAX_ID:
            raise AccountError("no reader ids are left")
        hashed = generate_password_hash(password, method=self.config.password_method)
        table.put(
            row, {b"a:reader": str(reader).encode(), b"a:password": hashed.encode(), b"a:created_ms": b"%d" % _now_ms()}
        )
        table.put(f"reader:{reader}".encode(), {b"a:name": username.encode()})
        return reader

    def check(self, username: str, password: str) -> int | None:
        """The reader id when the password is the account's, else None (in about the same time either way)."""
        row = self.conn.table(self.name).row(f"name:{normal_name(username)}".encode())
        stored = row.get(b"a:password")
        if stored is None or len(password) > MAX_PASSWORD:
            check_password_hash(_decoy(self.config.password_method), password[:MAX_PASSWORD])
            return None
        return int(row[b"a:reader"]) if check_password_hash(stored.decode(), password) else None

    def username(self, reader_id: int) -> str | None:
        name = self.conn.table(self.name).row(f"reader:{reader_id}".encode()).get(b"a:name")
        return name.decode() if name else None


class Tokens:
    """Reader tokens and service keys, stored by their hash."""

    def __init__(self, conn: Any, config: Config) -> None:
        self.conn, self.name, self.ttl_s = conn, tokens_table(config), config.accounts.token_ttl_s

    def ensure(self) -> None:
        if self.name.encode() not in self.conn.tables():
            self.conn.create_table(self.name, {"r": family(time_to_live=self.ttl_s), "s": family()})

    def issue_reader(self, reader_id: int) -> str:
        token = READER_PREFIX + secrets.token_urlsafe(32)
        self.conn.table(self.name).put(
            _hash(token), {b"r:reader": str(reader_id).encode(), b"r:created_ms": b"%d" % _now_ms()}
        )
        return token

    def issue_key(self, name: str, scopes: set[str]) -> str:
        if not USERNAME.fullmatch(name):
            raise AccountError("a key's name is 3 to 32 letters, digits, '.', '_' or '-'")
        unknown = scopes - set(SCOPES)
        if not scopes or unknown:
            raise AccountError(f"scopes are one or more of {', '.join(SCOPES)}; got {', '.join(sorted(scopes))}")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        self.conn.table(self.name).put(
            _hash(token),
            {
                b"s:name": name.encode(),
                b"s:scopes": " ".join(sorted(scopes)).encode(),
                b"s:created_ms": b"%d" % _now_ms(),
            },
        )
        return token

    def lookup(self, token: str) -> Principal | None:
        """Who the token speaks for; None for an unknown, revoked or expired one."""
        if not token.startswith((READER_PREFIX, KEY_PREFIX)) or len(token) > 100:
            return None
        row = self.conn.table(self.name).row(_hash(token))
        if b"r:reader" in row:
            if _now_ms() - int(row[b"r:created_ms"]) > self.ttl_s * 1000:
                return None
            reader = int(row[b"r:reader"])
            return Principal("reader", reader, str(reader), frozenset())
        if b"s:name" in row:
            return Principal("key", None, row[b"s:name"].decode(), frozenset(row[b"s:scopes"].decode().split()))
        return None

    def revoke(self, token: str) -> None:
        self.conn.table(self.name).delete(_hash(token))

    def keys(self) -> list[dict[str, Any]]:
        """Every service key: name, scopes, created (never the key)."""
        rows = self.conn.table(self.name).scan(columns=[b"s"])
        return [
            {
                "name": v[b"s:name"].decode(),
                "scopes": v[b"s:scopes"].decode().split(),
                "created_ms": int(v[b"s:created_ms"]),
                "id": k.decode()[:12],
            }
            for k, v in rows
        ]

    def revoke_key(self, name: str) -> int:
        """Revoke every key of that name; how many there were."""
        gone = [k for k, v in self.conn.table(self.name).scan(columns=[b"s"]) if v[b"s:name"].decode() == name]
        for key in gone:
            self.conn.table(self.name).delete(key)
        return len(gone)
