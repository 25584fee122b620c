"""The web UI: pages render the catalog escaped, forms need the CSRF token, ratings flow as they should."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from readnext.clients import kafka_consumer
from serving_layer.app import create_app


@pytest.fixture
def browser(served):
    config = served.config
    rows = served.rows
    client = create_app(config).test_client()
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    return config, rows, client, token


def test_home_lists_popular_books_and_search_escapes_the_query(browser):
    _, _, client, _ = browser
    page = client.get("/").get_data(as_text=True)
    assert page.count('class="card"') == 24 and "Popular books" in page
    assert "Book 1, &#34;genre 1&#34;" in page or "Book 1, &quot;genre 1&quot;" in page or "genre" in page
    found = client.get("/?q=book 12").get_data(as_text=True)
    assert 'href="/books/12"' in found
    evil = client.get("/?q=<script>alert(1)</script>").get_data(as_text=True)
    assert "<script>alert(1)" not in evil and "&lt;script&gt;alert(1)" in evil


def test_forms_without_the_csrf_token_are_refused(browser):
    _, _, client, token = browser
    assert client.post("/anonymous", data={}).status_code == 400
    assert client.post("/anonymous", data={"csrf": "forged"}).status_code == 400
    assert client.post("/anonymous", data={"csrf": token}).status_code == 302


def test_new_reader_rates_three_books_and_gets_folded_in_recommendations(browser):
    _, _, client, token = browser
    client.post("/anonymous", data={"csrf": token})
    for book, stars in ((5, 5), (10, 5), (15, 4)):
        assert client.post("/rate", data={"csrf": token, "book_id": book, "rating": stars}).status_code == 302
    page = client.get("/books/10").get_data(as_text=True)
    assert page.count("star on") == 5
    me = client.get("/me").get_data(as_text=True)
    ratings = json.loads(re.search(r"data-ratings='([^']*)'", me).group(1))
    assert ratings == [{"book_id": 5, "rating": 5}, {"book_id": 10, "rating": 5}, {"book_id": 15, "rating": 4}]
    answer = client.post("/api/v1/recommendations", json={"ratings": ratings, "n": 5}).get_json()
    assert answer["source"] == "fold-in" and not {i["book_id"] for i in answer["items"]} & {5, 10, 15}
    assert client.post("/rate", data={"csrf": token, "book_id": 5, "rating": 9}).status_code == 400


def _csrf(client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


def test_a_reader_signs_up_and_their_rating_goes_to_kafka_in_their_name(browser, unique_name):
    config, _, client, token = browser
    signed_up = client.post("/signup", data={"csrf": token, "username": unique_name[-20:], "password": "x" * 12})
    assert signed_up.status_code == 302
    me = client.get("/me")
    reader = int(re.search(r'data-reader="(\d+)"', me.get_data(as_text=True)).group(1))
    assert reader >= config.accounts.first_reader_id and me.headers["Cache-Control"] == "no-store"
    assert client.post("/rate", data={"csrf": token, "book_id": 33, "rating": 4}).status_code == 400, "CSRF rotated"
    assert client.post("/rate", data={"csrf": _csrf(client), "book_id": 33, "rating": 4}).status_code == 302
    consumer = kafka_consumer(
        config, config.kafka.ratings_topic, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    values = [json.loads(r.value) for r in consumer]
    consumer.close()
    assert {"user_id": reader, "book_id": 33, "rating": 4, "writer": f"reader:{reader}"} in [
        {k: v[k] for k in ("user_id", "book_id", "rating", "writer") if k in v} for v in values
    ]


def test_sign_in_by_reader_id_is_a_demo_switch_off_by_default(served):
    off = create_app(served.config).test_client()
    assert off.post("/signin", data={"csrf": _csrf(off), "reader": "4"}).status_code == 400
    assert "Reader id" not in off.get("/signin").get_data(as_text=True)
    config = dataclasses.replace(served.config, serving=dataclasses.replace(served.config.serving, demo_sign_in=True))
    on = create_app(config).test_client()
    assert "demo switch" in on.get("/signin").get_data(as_text=True)
    assert on.post("/signin", data={"csrf": _csrf(on), "reader": "4"}).status_code == 302
    page = on.get("/me").get_data(as_text=True)
    assert 'data-reader="4"' in page and "(demo sign-in)" in page
