"""The JSON API against the real stack: merge rule, anonymous fold-in, books, explanations, errors."""

from __future__ import annotations

import dataclasses
import io
import json
import time

import pytest

from readnext.clients import hbase_connection, kafka_consumer
from readnext.events import StreamEvent
from readnext.views import generation_table, row_key
from serving_layer.app import create_app
from tests.proxy import TcpProxy


def _known(rows, user):
    return {b: r for u, b, r in rows if u == user}


def test_known_reader_gets_the_batch_view_with_metadata_and_reasons(served):
    rows = served.rows
    client = served.client
    me = served.reader(4)
    answer = client.get("/api/v1/users/4/recommendations?n=5", headers=me).get_json()
    assert answer["source"] == "batch" and len(answer["items"]) == 5
    ids = [i["book_id"] for i in answer["items"]]
    assert not set(ids) & set(_known(rows, 4))
    first = answer["items"][0]
    assert first["title"].startswith(f"Book {first['book_id']},") and first["cover_url"].endswith(".jpg")
    assert first["reason"].startswith("because you rated Book ")
    scores = [i["score"] for i in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    page2 = client.get("/api/v1/users/4/recommendations?n=5&offset=5", headers=me).get_json()
    assert not set(ids) & {i["book_id"] for i in page2["items"]}
    with_known = client.get("/api/v1/users/4/recommendations?n=20&exclude_known=false", headers=me).get_json()
    assert set(_known(rows, 4)) & {i["book_id"] for i in with_known["items"]}


def test_a_worker_reads_a_readers_batch_row_once_per_generation(served):
    """The generation's tables never change, so a worker answers a known reader from the row it read first."""
    me = served.reader(7)
    path = "/api/v1/users/7/recommendations?n=5"
    first = served.client.get(path, headers=me).get_json()
    uncached = dataclasses.replace(
        served.config, serving=dataclasses.replace(served.config.serving, batch_rows_cached=0)
    )
    forgetful = create_app(uncached).test_client()
    assert first["source"] == "batch" and forgetful.get(path, headers=me).get_json() == first
    table = generation_table(served.config, first["generation"], "users")
    conn = hbase_connection(served.config)
    try:
        cells = conn.table(table).row(row_key(7))
        conn.table(table).delete(row_key(7))
        try:
            assert served.client.get(path, headers=me).get_json() == first, "answered from the row it remembers"
            assert forgetful.get(path, headers=me).get_json()["source"] == "popular", "batch_rows_cached = 0 reads"
            fresh = create_app(served.config).test_client()  # a worker that has not read the row yet
            assert fresh.get(path, headers=me).get_json()["source"] == "popular"
        finally:
            conn.table(table).put(row_key(7), cells)
    finally:
        conn.close()


def test_speed_view_newer_than_the_batch_wins(served, speed_rows):
    rows, client = served.rows, served.client
    unseen = next(b for b in range(1, 91) if b not in _known(rows, 6))
    speed_rows({6: [StreamEvent("x-0", 1, 6, unseen, 5, 1000)]})
    me = served.reader(6)
    answer = client.get("/api/v1/users/6/recommendations?n=10", headers=me).get_json()
    assert answer["source"] == "speed"
    assert unseen not in {i["book_id"] for i in answer["items"]}
    ratings = client.get("/api/v1/users/6/ratings", headers=me).get_json()
    assert ratings["source"] == "speed" and {i["book_id"]: i["rating"] for i in ratings["items"]}[unseen] == 5


def test_unknown_reader_gets_popular_books(served):
    client = served.client
    app = served.app
    me = served.reader(777777)
    answer = client.get("/api/v1/users/777777/recommendations?n=3", headers=me).get_json()
    assert answer["source"] == "popular"
    popular = app.extensions["readnext"].snapshot().catalog.popular[:3]
    assert [i["book_id"] for i in answer["items"]] == list(popular)
    assert client.get("/api/v1/users/777777/ratings", headers=me).status_code == 404


def test_anonymous_reader_is_folded_in_exactly(served):
    client = served.client
    app = served.app
    snap = app.extensions["readnext"].snapshot()
    body = {"ratings": [{"book_id": 5, "rating": 5}, {"book_id": 10, "rating": 4}, {"book_id": 3, "rating": 1}], "n": 5}
    raw = "/api/v1/recommendations?popularity_penalty=0&max_per_author=0"  # the model's own order
    answer = client.post(raw, json=body).get_json()
    assert answer["source"] == "fold-in"
    vector = snap.model.fold_in({5: 5, 10: 4, 3: 1})
    expected = snap.model.recommend(vector, 5, {5, 10, 3})
    assert [(i["book_id"], round(i["score"], 4)) for i in answer["items"]] == [(b, round(s, 4)) for b, s in expected]


def test_books_similar_popular_and_search(served):
    rows = served.rows
    client = served.client
    book = client.get("/api/v1/books/7").get_json()
    assert book["title"] == 'Book 7, "genre 2"' and book["ratings_count"] == sum(1 for _, b, _ in rows if b == 7)
    similar = client.get("/api/v1/books/7/similar?n=3").get_json()["items"]
    assert len(similar) == 3 and 7 not in {i["book_id"] for i in similar}
    popular = client.get("/api/v1/books/popular?n=4").get_json()["items"]
    assert len(popular) == 4
    found = client.get("/api/v1/books/search?q=BOOK 12").get_json()
    assert found["items"][0]["book_id"] == 12
    assert client.get("/api/v1/books/search?q=author 3 genre").get_json()["total"] > 0


def test_explanations_add_up_to_the_estimate(served):
    rows = served.rows
    client = served.client
    me = served.reader(9)
    recs = client.get("/api/v1/users/9/recommendations?n=1", headers=me).get_json()["items"]
    book = recs[0]["book_id"]
    because = client.get(f"/api/v1/users/9/because/{book}", headers=me).get_json()
    estimate = client.get(f"/api/v1/users/9/estimate?books={book},1", headers=me).get_json()["items"][0]["estimate"]
    assert abs(because["score"] - estimate) < 1e-4
    assert because["items"][0]["book_id"] in _known(rows, 9)


def test_posting_a_rating_puts_it_on_kafka(served):
    config = served.config
    client = served.client
    reply = client.post("/api/v1/ratings", json={"user_id": 12, "book_id": 4, "rating": 5}, headers=served.reader(12))
    assert reply.status_code == 202
    event_id = reply.get_json()["event_id"]
    consumer = kafka_consumer(
        config, config.kafka.ratings_topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    values = {v.get("event_id"): v for v in (json.loads(r.value) for r in consumer)}
    consumer.close()
    expected = {"user_id": 12, "book_id": 4, "rating": 5, "event_id": event_id, "writer": "reader:12"}
    assert expected.items() <= values[event_id].items()


@pytest.fixture(scope="module")
def service(served):
    """A trusted back end's key: it may read any reader and post for any reader."""
    return served.key("readers:read", "ratings:write")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/api/v1/users/4/recommendations?n=0", None, 400),
        ("get", "/api/v1/users/4/recommendations?n=abc", None, 400),
        ("get", "/api/v1/users/4/recommendations?exclude_known=maybe", None, 400),
        ("post", "/api/v1/recommendations", {"ratings": [{"book_id": 5, "rating": 9}]}, 400),
        ("post", "/api/v1/recommendations", {"ratings": []}, 400),
        ("post", "/api/v1/recommendations", {"ratings": [{"book_id": 99999, "rating": 3}]}, 404),
        ("post", "/api/v1/recommendations", {"ratings": [{"book_id": 5, "rating": 3, "user_id": 9}]}, 400),
        ("post", "/api/v1/recommendations", {"ratings": [{"book_id": 5, "rating": 3}], "x": 1}, 400),
        ("post", "/api/v1/recommendations", "[" * 1000, 400),
        ("post", "/api/v1/ratings", "[" * 1000, 400),
        ("post", "/api/v1/ratings", {"user_id": 980009, "book_id": 1, "rating": 4, "ts": 2**63}, 400),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 1, "rating": 4, "ts": "1900-01-01T00:00:00Z"}, 400),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 1, "rating": 4, "ts": "9999-12-31T23:59:59Z"}, 400),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 1, "rating": 4, "ts": "yesterday"}, 400),
        ("post", "/api/v1/ratings", {"user_id": 2**31, "book_id": 1, "rating": 4}, 400),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 99999, "rating": 4}, 404),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 5}, 400),
        ("post", "/api/v1/ratings", {"user_id": 1, "book_id": 5, "rating": "5"}, 400),
        ("get", "/api/v1/books/99999", None, 404),
        ("get", "/api/v1/books/99999/similar", None, 404),
        ("get", "/api/v1/books/search?q=", None, 400),
        ("get", "/api/v1/users/4/estimate?books=a,b", None, 400),
        ("get", "/api/v1/users/4/estimate?books=1,,2", None, 400),
        ("get", "/api/v1/users/4294967296/recommendations", None, 404),
        ("get", "/api/v1//books/1", None, 404),
        ("get", "/api/v1/no/such/route", None, 404),
        ("post", "/api/v1/ratings", "x" * 70_000, 413),
    ],
)
def test_errors_are_json_with_the_right_status(served, service, method, path, body, status):
    client = served.client
    if isinstance(body, str):
        reply = client.post(path, data=body, content_type="application/json", headers=service)
        assert reply.status_code < 500, "a malformed body is the client's error"
    else:
        kwargs = {"json": body} if body is not None else {}
        reply = getattr(client, method)(path, headers=service, **kwargs)
    assert reply.status_code == status
    assert reply.is_json and reply.get_json()["status"] == status and reply.get_json()["error"]
    assert "Traceback" not in reply.get_data(as_text=True)


def test_a_chunked_body_over_the_limit_is_413_and_a_plain_text_body_415(served, service):
    client = served.client
    app = served.app
    big = json.dumps({"user_id": 1, "book_id": 1, "rating": 4, "pad": "x" * app.config["MAX_CONTENT_LENGTH"]})
    reply = client.post(
        "/api/v1/ratings",
        input_stream=io.BytesIO(big.encode()),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked", **service},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert reply.status_code == 413 and reply.get_json()["status"] == 413
    reply = client.post("/api/v1/ratings", data='{"user_id": 1}', content_type="text/plain", headers=service)
    assert reply.status_code == 415


def test_405_names_the_allowed_methods(served):
    client = served.client
    reply = client.delete("/api/v1/ratings")
    assert reply.status_code == 405 and reply.is_json
    assert reply.headers["Allow"].split(", ") and "POST" in reply.headers["Allow"]


def test_no_redirect_is_built_from_the_clients_host(served):
    client = served.client
    for path in ("//api/v1/books/1", "/api/v1/books/1/", "//evil.example/api/v1/books/1"):
        reply = client.get(path, headers={"Host": "evil.example"})
        assert reply.status_code in (200, 404) and "Location" not in reply.headers, path


def test_answers_about_one_reader_are_not_stored_by_caches(served):
    client = served.client
    assert (
        client.get("/api/v1/users/4/recommendations", headers=served.reader(4)).headers["Cache-Control"] == "no-store"
    )
    unknown = client.get("/api/v1/users/99999/ratings", headers=served.reader(99999))
    assert unknown.status_code == 404 and unknown.headers["Cache-Control"] == "no-store"
    anonymous = client.post("/api/v1/recommendations", json={"ratings": [{"book_id": 5, "rating": 4}]})
    assert anonymous.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/api/v1/books/popular").headers


def test_kafka_down_means_503_with_advice(served):
    config = served.config
    down = dataclasses.replace(config, kafka=dataclasses.replace(config.kafka, bootstrap_servers="127.0.0.1:1"))
    client = create_app(down).test_client()
    reply = client.post("/api/v1/ratings", json={"user_id": 1, "book_id": 5, "rating": 4}, headers=served.reader(1))
    assert reply.status_code == 503 and "retry" in reply.get_json()["error"]
    started = time.monotonic()
    again = client.post("/api/v1/ratings", json={"user_id": 1, "book_id": 6, "rating": 4}, headers=served.reader(1))
    took = time.monotonic() - started
    assert again.status_code == 503 and took < config.kafka.send_timeout_s / 2, f"told at once, not after {took:.1f} s"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and any("Kafka" in p for p in ready.get_json()["problems"])


def test_the_app_factory_does_no_network_io_and_readyz_names_what_setup_lacks(served, unique_name):
    config = served.config
    nowhere = dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, bootstrap_servers="127.0.0.1:1"),
        hbase=dataclasses.replace(config.hbase, port=1),
    )
    assert create_app(nowhere).test_client().get("/healthz").status_code == 200, "built with every server away"
    fresh = dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, ratings_topic=f"{unique_name}-ratings"),
        hbase=dataclasses.replace(config.hbase, table_prefix=unique_name),
    )
    ready = create_app(fresh).test_client().get("/readyz")
    problems = " ".join(ready.get_json()["problems"])
    assert ready.status_code == 503
    assert f"{unique_name}_speed is missing" in problems and f"{unique_name}-ratings is missing" in problems
    assert "deploy.init" in problems


def test_hbase_down_degrades_to_popular_with_a_notice(served):
    config = served.config
    proxy = TcpProxy(config.hbase.port, config.hbase.host)
    app = create_app(dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, port=proxy.port)))
    client = app.test_client()
    me = served.reader(4)
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/v1/users/4/recommendations?n=3", headers=me).get_json()["source"] == "batch"
    proxy.cut()
    answer = client.get("/api/v1/users/4/recommendations?n=3", headers=me)
    assert answer.status_code == 200
    assert answer.get_json()["source"] == "popular" and "unavailable" in answer.get_json()["notice"]
    assert client.get("/readyz").status_code == 503


def test_a_dropped_hbase_connection_is_retried_once(served):
    config = served.config
    proxy = TcpProxy(config.hbase.port, config.hbase.host)
    app = create_app(dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, port=proxy.port)))
    client = app.test_client()
    me = served.reader(4)
    assert client.get("/api/v1/users/4/recommendations?n=3", headers=me).get_json()["source"] == "batch"
    proxy.drop()  # as a Thrift server restart: the pooled connection is dead, a new one works
    answer = client.get("/api/v1/users/4/recommendations?n=3", headers=me).get_json()
    assert answer["source"] == "batch" and "notice" not in answer
    proxy.cut()


def test_security_headers_and_openapi(served):
    client = served.client
    reply = client.get("/api/v1/openapi.json")
    assert (
        reply.headers["X-Content-Type-Options"] == "nosniff"
        and "default-src" in reply.headers["Content-Security-Policy"]
    )
    paths = reply.get_json()["paths"]
    assert "/users/{user_id}/recommendations" in paths and "/ratings" in paths
    assert client.get("/healthz").get_json() == {"status": "alive"}


def test_the_status_reports_the_generation_and_each_store_and_survives_stores_away(served):
    answer = served.client.get("/api/v1/status")
    assert answer.status_code == 200
    report = answer.get_json()
    snap = served.app.extensions["readnext"].snapshot()
    assert report["generation"]["id"] == snap.model.generation and report["generation"]["age_s"] >= 0
    assert report["generation"]["counts"]["ratings"] == len({(u, b) for u, b, _ in served.rows})
    assert [q["generation"] for q in report["quality"]][-1] == snap.model.generation
    assert all(report["health"][name]["ok"] for name in ("kafka", "hbase", "metastore", "artifacts")), report
    config = served.config
    proxy = TcpProxy(config.hbase.port, config.hbase.host)
    away = dataclasses.replace(
        config,
        hbase=dataclasses.replace(config.hbase, port=proxy.port),
        kafka=dataclasses.replace(config.kafka, bootstrap_servers="127.0.0.1:1"),
        metrics=dataclasses.replace(config.metrics, prometheus_port=1),
    )
    client = create_app(away).test_client()
    assert client.get("/api/v1/status").get_json()["health"]["hbase"]["ok"]
    proxy.cut()
    report = client.get("/api/v1/status").get_json()
    down = {name for name, check in report["health"].items() if not check["ok"]}
    assert down == {"hbase", "kafka", "prometheus"} and report["speed_layer"] is None
    page = client.get("/status")
    assert page.status_code == 200 and page.get_data(as_text=True).count("DOWN") == 3
