"""The web UI in a real browser: Debian's headless Chromium, driven through chromedriver by Selenium.

A new reader searches, rates three books with the stars, and sees recommendations appear on
"Recommended for you"; screenshots (desktop and phone width) are saved under the test's folder.
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
