"""The web UI in a real browser: Debian's headless Chromium, driven through chromedriver by Selenium.

A new anonymous reader searches, rates three books with the stars, and sees recommendations appear
on "Recommended for you"; a reader signs up, rates, signs out and in again and sees the same
recommendations, which a second reader can neither see nor change. Screenshots are saved under
the tests' folders.
"""

from __future__ import annotations

import shutil
import threading

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from readnext.clients import kafka_consumer
from readnext.events import StreamEvent, parse_event


@pytest.fixture(scope="module")
def site(served):
    app = served.app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()


@pytest.fixture
def chrome():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are missing: run deploy/setup (make setup)"
    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    yield browser
    browser.quit()


def _wait(browser, condition, seconds=20):
    return WebDriverWait(browser, seconds).until(lambda b: condition(b))


def test_new_reader_searches_rates_three_books_and_gets_recommendations(site, chrome, tmp_path):
    chrome.get(site + "/")
    assert chrome.find_elements(By.CSS_SELECTOR, "#books .card"), "popular books on the home page"
    box = chrome.find_element(By.NAME, "q")
    box.send_keys("book 12")
    box.submit()
    _wait(chrome, lambda b: "matching" in b.find_element(By.TAG_NAME, "h1").text)
    assert chrome.find_elements(By.CSS_SELECTOR, 'a.card[href="/books/12"]')

    chrome.find_element(By.ID, "start-new").click()
    _wait(chrome, lambda b: b.find_elements(By.ID, "for-you"))
    rated = {5: 5, 10: 5, 15: 4}
    for book, stars in rated.items():
        chrome.get(f"{site}/books/{book}")
        chrome.find_element(By.CSS_SELECTOR, f'form.stars button[value="{stars}"]').click()
        _wait(chrome, lambda b: b.find_elements(By.ID, "rated"))
        assert len(chrome.find_elements(By.CSS_SELECTOR, "form.stars button.star.on")) == stars

    chrome.find_element(By.ID, "for-you").click()
    cards = _wait(chrome, lambda b: b.find_elements(By.CSS_SELECTOR, "#recs .card"))
    assert "from the books you rated" in chrome.find_element(By.ID, "status").text
    shown = {int(c.get_attribute("href").rsplit("/", 1)[1]) for c in cards}
    assert len(shown) >= 5 and not shown & set(rated)
    assert all(c.find_element(By.CSS_SELECTOR, ".reason").text.startswith("because you rated") for c in cards)
    assert chrome.save_screenshot(str(tmp_path / "recommendations-desktop.png"))

    chrome.set_window_size(390, 844)
    chrome.refresh()
    _wait(chrome, lambda b: b.find_elements(By.CSS_SELECTOR, "#recs .card"))
    width = chrome.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, "no sideways scrolling at phone width"
    assert chrome.find_element(By.NAME, "q").size["height"] < 60, "the header stays compact"
    assert chrome.find_element(By.CSS_SELECTOR, "#recs .card").location["y"] < 844, "recommendations on screen"
    assert chrome.save_screenshot(str(tmp_path / "recommendations-phone.png"))


def _sign_up(chrome, site: str, username: str, password: str) -> int:
    chrome.get(site + "/signup")
    chrome.find_element(By.NAME, "username").send_keys(username)
    chrome.find_element(By.NAME, "password").send_keys(password)
    chrome.find_element(By.ID, "sign-up-submit").click()
    recs = _wait(chrome, lambda b: b.find_elements(By.ID, "recs"))[0]
    return int(recs.get_attribute("data-reader"))


def _streamed(served, reader: int) -> dict[int, list[StreamEvent]]:
    """The reader's events on the ratings topic, as the speed layer reads them."""
    config = served.config
    consumer = kafka_consumer(
        config, config.kafka.ratings_topic, auto_offset_reset="earliest", consumer_timeout_ms=5_000
    )
    events = []
    for record in consumer:
        event = parse_event(record.value)
        if event.user_id == reader:
            origin = f"{record.topic}-{record.partition}"
            events.append(StreamEvent(origin, record.offset, reader, event.book_id, event.rating, event.ts_ms))
    consumer.close()
    return {reader: events}


def _shown(chrome) -> list[int]:
    cards = _wait(chrome, lambda b: b.find_elements(By.CSS_SELECTOR, "#recs .card"))
    return [int(c.get_attribute("href").rsplit("/", 1)[1]) for c in cards]


def test_a_reader_signs_up_rates_signs_out_and_in_and_nobody_else_sees_their_data(
    served, site, chrome, speed_rows, unique_name, tmp_path
):
    password = "a long enough password"
    reader = _sign_up(chrome, site, unique_name, password)
    assert unique_name in chrome.find_element(By.ID, "who").text
    rated = {5: 5, 10: 5, 15: 4}
    for book, stars in rated.items():
        chrome.get(f"{site}/books/{book}")
        chrome.find_element(By.CSS_SELECTOR, f'form.stars button[value="{stars}"]').click()
        _wait(chrome, lambda b: b.find_elements(By.ID, "rated"))
    streamed = _wait(chrome, lambda _: (found := _streamed(served, reader)) and len(found[reader]) == 3 and found)
    assert {e.book_id: e.rating for e in streamed[reader]} == rated, "the ratings went to Kafka in the reader's name"
    speed_rows(streamed)  # what the speed layer does with them

    chrome.get(site + "/me")
    _wait(chrome, lambda b: "updated just now" in b.find_element(By.ID, "status").text)
    before = _shown(chrome)
    assert before and not set(before) & set(rated)
    assert chrome.save_screenshot(str(tmp_path / "signed-in.png"))

    chrome.find_element(By.ID, "sign-out").click()
    _wait(chrome, lambda b: b.find_elements(By.ID, "sign-in"))
    chrome.get(site + "/signin")
    chrome.find_element(By.NAME, "username").send_keys(unique_name)
    chrome.find_element(By.NAME, "password").send_keys(password)
    chrome.find_element(By.ID, "sign-in-submit").click()
    _wait(chrome, lambda b: "updated just now" in b.find_element(By.ID, "status").text)
    assert _shown(chrome) == before, "the same recommendations after signing in again"

    chrome.find_element(By.ID, "sign-out").click()
    _wait(chrome, lambda b: b.find_elements(By.ID, "sign-in"))
    other = _sign_up(chrome, site, unique_name + "b", password)
    assert other != reader
    _wait(chrome, lambda b: "popular books" in b.find_element(By.ID, "status").text)
    probe = """
        const [first, done] = arguments, token = document.getElementById("recs").dataset.token;
        const auth = {Authorization: "Bearer " + token, "Content-Type": "application/json"};
        Promise.all([
          fetch(`/api/v1/users/${first}/ratings`, {headers: auth}).then((r) => r.status),
          fetch("/api/v1/ratings", {method: "POST", headers: auth,
                body: JSON.stringify({user_id: first, book_id: 7, rating: 1})}).then((r) => r.status),
        ]).then(done);
    """
    assert chrome.execute_async_script(probe, reader) == [403, 403], (
        "the second reader can neither see nor change the first's"
    )


def test_the_status_page_shows_the_generation_its_quality_and_the_stores(served, site, chrome, tmp_path):
    chrome.get(site + "/status")
    generation = served.app.extensions["readnext"].snapshot().model.generation
    assert generation in chrome.find_element(By.ID, "generation").text
    assert generation in chrome.find_element(By.ID, "quality").text, "the generations' quality table"
    rows = chrome.find_elements(By.CSS_SELECTOR, "#health tr")
    assert {r.find_element(By.TAG_NAME, "th").text for r in rows} >= {"kafka", "hbase", "metastore", "artifacts"}
    assert chrome.save_screenshot(str(tmp_path / "status.png"))
