"""Who may do what: accounts, reader tokens, service keys, sessions and rate limits, against the real stack."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from readnext.accounts import AccountError, Accounts, Tokens, accounts_table, tokens_table
from readnext.clients import hbase_connection, kafka_consumer
from readnext.config import PROJECT_ROOT
from serving_layer.app import create_app
from tests.waiting import wait_for


@pytest.fixture
def account(served):
    """A new account: (username, password, reader id)."""
    username, password = f"u{uuid.uuid4().hex[:10]}", "correct horse battery"
    conn = hbase_connection(served.config)
    try:
        reader = Accounts(conn, served.config).sign_up(username, password)
    finally:
        conn.close()
    return username, password, reader


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_readers_token_opens_their_own_data_and_nobody_elses(served):
    client, me = served.client, served.reader(4)
    assert client.get("/api/v1/users/4/ratings", headers=me).status_code == 200
    for path in ("/users/5/ratings", "/users/5/recommendations", "/users/5/because/3", "/users/5/estimate?books=3"):
        reply = client.get(f"/api/v1{path}", headers=me)
        assert reply.status_code == 403 and reply.get_json()["status"] == 403, path
        anonymous = client.get(f"/api/v1{path}")
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].lower().startswith("bearer")
    post = client.post("/api/v1/ratings", json={"user_id": 5, "book_id": 3, "rating": 4}, headers=me)
    assert post.status_code == 403
    assert client.post("/api/v1/ratings", json={"user_id": 5, "book_id": 3, "rating": 4}).status_code == 401
    for header in ("Bearer rnr_forged", "Basic dXNlcjpwdw==", "Bearer"):
        assert client.get("/api/v1/users/4/ratings", headers={"Authorization": header}).status_code == 401
    assert client.get("/api/v1/books/popular").status_code == 200, "public data needs no token"
    assert client.post("/api/v1/recommendations", json={"ratings": [{"book_id": 5, "rating": 4}]}).status_code == 200


def test_a_password_issues_a_token_that_revoking_ends(served, account):
    client = served.client
    username, password, reader = account
    wrong = client.post("/api/v1/tokens", json={"username": username, "password": "not the password"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "wrong username or password"
    nobody = client.post("/api/v1/tokens", json={"username": "nobody-here", "password": password})
    assert nobody.status_code == 401 and nobody.get_json()["error"] == wrong.get_json()["error"]
    issued = client.post("/api/v1/tokens", json={"username": username.upper(), "password": password})
    assert issued.status_code == 201 and issued.get_json()["user_id"] == reader
    mine = _bearer(issued.get_json()["token"])
    assert client.get(f"/api/v1/users/{reader}/recommendations", headers=mine).get_json()["source"] == "popular"
    assert client.delete("/api/v1/tokens/current", headers=mine).status_code == 204
    assert client.get(f"/api/v1/users/{reader}/recommendations", headers=mine).status_code == 401


def test_secrets_are_stored_only_as_hashes_and_names_are_unique(served, account):
    username, password, reader = account
    token = served.reader(reader)["Authorization"].split()[1]
    conn = hbase_connection(served.config)
    try:
        stored = conn.table(accounts_table(served.config)).row(f"name:{username}".encode())
        assert stored[b"a:password"].startswith(b"scrypt:") and password.encode() not in stored[b"a:password"]
        rows = dict(conn.table(tokens_table(served.config)).scan())
        assert token.encode() not in rows and not any(token.encode() in v for r in rows.values() for v in r.values())
        assert Tokens(conn, served.config).lookup(token).reader_id == reader
        with pytest.raises(AccountError, match="taken"):
            Accounts(conn, served.config).sign_up(username, "another long password")
        with pytest.raises(AccountError, match="password"):
            Accounts(conn, served.config).sign_up(f"{username}x", "short")
    finally:
        conn.close()


def test_service_keys_do_what_their_scopes_say_and_writes_name_their_writer(served):
    config, client = served.config, served.client
    env = {
        **os.environ,
        "READNEXT_HBASE_TABLE_PREFIX": config.hbase.table_prefix,
        "READNEXT_KAFKA_BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
    }

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "serving_layer", "keys", *args]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)

    created = keys("create", "importer", "--scope", "ratings:write")
    assert created.returncode == 0, created.stderr
    importer = _bearer(created.stdout.split()[-1])
    reader_key = served.key("readers:read")
    assert client.get("/api/v1/users/5/ratings", headers=reader_key).status_code == 200
    rating = {"user_id": 5, "book_id": 3, "rating": 2}
    assert client.post("/api/v1/ratings", json=rating, headers=reader_key).status_code == 403
    assert client.get("/api/v1/users/5/ratings", headers=importer).status_code == 403
    posted = client.post("/api/v1/ratings", json=rating, headers=importer)
    assert posted.status_code == 202
    forged = client.post("/api/v1/ratings", json={**rating, "writer": "reader:5"}, headers=importer)
    assert forged.status_code == 400
    consumer = kafka_consumer(
        config, config.kafka.ratings_topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    events = {e["event_id"]: e for e in (json.loads(r.value) for r in consumer) if "event_id" in e}
    consumer.close()
    assert events[posted.get_json()["event_id"]]["writer"] == "key:importer"
    listed = keys("list")
    assert "importer" in listed.stdout and "ratings:write" in listed.stdout
    assert created.stdout.split()[-1] not in listed.stdout, "a key is shown once"
    assert client.delete("/api/v1/tokens/current", headers=importer).status_code == 403, "keys are revoked by CLI"
    assert keys("revoke", "importer").returncode == 0
    revoked_at = time.monotonic()
    wait_for(
        lambda: client.post("/api/v1/ratings", json=rating, headers=importer).status_code == 401,
        "the revoked key refused",
        timeout=config.serving.token_cache_s + 5,
    )
    assert time.monotonic() - revoked_at < config.serving.token_cache_s + 1, "refused within token_cache_s"
    assert keys("create", "bad", "--scope", "admin").returncode != 0


def test_sign_out_revokes_the_session_and_a_replayed_cookie_is_signed_out(served, account):
    username, password, reader = account
    client = create_app(served.config).test_client()
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").get_data(as_text=True)).group(1)
    assert client.post("/signin", data={"csrf": csrf, "username": username, "password": "wrong"}).status_code == 401
    assert client.post("/signin", data={"csrf": csrf, "username": username, "password": password}).status_code == 302
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    page = client.get("/me").get_data(as_text=True)
    token = re.search(r'data-token="([^"]+)"', page).group(1)
    assert client.get(f"/api/v1/users/{reader}/ratings", headers=_bearer(token)).status_code in (200, 404)
    other_worker = create_app(served.config).test_client()
    assert other_worker.get(f"/api/v1/users/{reader}/ratings", headers=_bearer(token)).status_code in (200, 404)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/signout", data={"csrf": csrf}).status_code == 302
    assert client.get(f"/api/v1/users/{reader}/recommendations", headers=_bearer(token)).status_code == 401
    gone = other_worker.get(f"/api/v1/users/{reader}/recommendations", headers=_bearer(token))
    assert gone.status_code == 401, "a sign-out ends the token on every worker at once (readers' tokens are not cached)"
    replay = create_app(served.config).test_client()
    replay.set_cookie("session", cookie.value)
    assert replay.get("/me").status_code == 302, "the copied cookie's token was revoked at sign-out"
    assert username not in replay.get("/").get_data(as_text=True)


def test_a_rotated_secret_keeps_earlier_sessions_and_cookies_follow_the_settings(served, account):
    username, password, _ = account

    def app(secret: str, fallbacks: str = "", secure: bool = False):
        serving = dataclasses.replace(
            served.config.serving, secret_key=secret, secret_key_fallbacks=fallbacks, secure_cookies=secure
        )
        return create_app(dataclasses.replace(served.config, serving=serving)).test_client()

    client = app("old-key")
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").get_data(as_text=True)).group(1)
    client.post("/signin", data={"csrf": csrf, "username": username, "password": password})
    cookie = client.get_cookie("session").value
    for secret, fallbacks, signed_in in (("new-key", "old-key", True), ("new-key", "", False)):
        later = app(secret, fallbacks)
        later.set_cookie("session", cookie)
        assert (username in later.get("/").get_data(as_text=True)) == signed_in, fallbacks
    secure = app("new-key", secure=True)
    secure.get("/signin", base_url="https://localhost")
    assert secure.get_cookie("session").secure


@pytest.fixture
def limited(served):
    """Two apps (as two web-server workers) sharing the stack's memcached, with small limits, and a client address."""
    limits = dataclasses.replace(
        served.config.limits,
        enabled=True,
        search_per_client="3/minute",
        sign_in_per_client="100/minute",
        sign_in_per_account="2/minute",
        fold_in_per_client="2/minute",
    )
    config = dataclasses.replace(served.config, limits=limits)
    address = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
    return [create_app(config).test_client() for _ in range(2)], address


def test_limits_are_shared_by_every_worker_and_answer_429_with_retry_after(limited):
    (a, b), address = limited
    search = "/api/v1/books/search?q=book"
    assert [c.get(search, environ_base=address).status_code for c in (a, b, a)] == [200, 200, 200]
    refused = b.get(search, environ_base=address)
    assert refused.status_code == 429 and refused.get_json()["status"] == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert a.get(search, environ_base={"REMOTE_ADDR": "10.255.0.1"}).status_code == 200, "per client"
    fold_in = {"ratings": [{"book_id": 5, "rating": 4}]}
    statuses = [c.post("/api/v1/recommendations", json=fold_in, environ_base=address).status_code for c in (a, b, a)]
    assert statuses == [200, 200, 429]


def test_sign_ins_are_limited_per_account_from_any_address(limited):
    (a, b), _ = limited
    name = f"u{uuid.uuid4().hex[:10]}"
    tries = [
        client.post(
            "/api/v1/tokens",
            json={"username": name, "password": "guess"},
            environ_base={"REMOTE_ADDR": f"10.9.9.{i}"},
        ).status_code
        for i, client in enumerate((a, b, a))
    ]
    assert tries == [401, 401, 429]


def test_a_search_of_too_many_words_is_refused(served):
    words = " ".join(["book"] * (served.config.limits.max_query_words + 1))
    reply = served.client.get(f"/api/v1/books/search?q={words}")
    assert reply.status_code == 400 and "words" in reply.get_json()["error"]
    assert served.client.get(f"/api/v1/books/search?q={words.rsplit(' ', 1)[0]}").status_code == 200
