"""The web UI: server-rendered pages over the same state as the JSON API.

A reader signs in with a goodbooks reader id (their ratings go to Kafka and the speed layer
refreshes their recommendations within seconds) or starts as a new anonymous reader (ratings
kept in the signed session cookie and folded in exactly on each request). Forms carry a CSRF
token; Jinja escapes everything it prints.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, session, url_for

from readnext.events import InvalidEvent, parse_event
from serving_layer.state import Snapshot, book_summary, current_snapshot, serving_state

web = Blueprint("web", __name__)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


@web.before_app_request
def check_csrf() -> None:
    if request.method == "POST" and request.blueprint == "web":
        sent = request.form.get("csrf", "")
        if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
            abort(400, "the form expired; reload the page and try again")


@web.app_context_processor
def template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "reader": session.get("reader"), "anonymous": "anon" in session}


def _books(snap: Snapshot, ids: list[int]) -> list[dict[str, Any]]:
    return [book_summary(snap.catalog.books[b]) for b in ids if b in snap.catalog.books]


@web.get("/")
def home() -> str:
    snap = current_snapshot()
    q = request.args.get("q", "").strip()[:200]
    found = snap.catalog.search(q) if q else [snap.catalog.books[b] for b in snap.catalog.popular]
    books = [book_summary(b) for b in found[:24]]
    return render_template("home.html", books=books, q=q)


@web.get("/books/<int:book_id>")
def book(book_id: int) -> str:
    snap = current_snapshot()
    found = snap.catalog.books.get(book_id)
    if found is None:
        abort(404, f"no book {book_id}")
    similar = _books(snap, [b for b, _ in found.similar[:8]])
    mine = session.get("anon", {}).get(str(book_id))
    return render_template("book.html", book=book_summary(found), similar=similar, my_rating=mine)


@web.post("/signin")
def signin() -> Any:
    try:
        reader = int(request.form.get("reader", ""))
    except ValueError:
        abort(400, "a reader id is a number")
    if not 1 <= reader <= 2_147_483_647:
        abort(400, "no such reader id")
    session.pop("anon", None)
    session["reader"] = reader
    return redirect(url_for("web.me"))


@web.post("/anonymous")
def anonymous() -> Any:
    session.pop("reader", None)
    session["anon"] = {}
    return redirect(url_for("web.home"))


@web.post("/signout")
def signout() -> Any:
    session.clear()
    return redirect(url_for("web.home"))


@web.post("/rate")
def rate() -> Any:
    snap = current_snapshot()
    try:
        event = parse_event(
            {
                "user_id": session.get("reader") or 1,
                "book_id": int(request.form.get("book_id", "")),
                "rating": int(request.form.get("rating", "")),
            },
            set(snap.catalog.books),
        )
    except (ValueError, InvalidEvent) as e:
        abort(400, f"cannot take that rating: {e}")
    if session.get("reader"):
        try:
            serving_state().producer().send(event.user_id, event.book_id, event.rating)
        except Exception:  # noqa: BLE001 - any Kafka failure: tell the reader, lose nothing silently
            abort(503, "ratings cannot be taken right now; please try again in a moment")
    elif "anon" in session:
        ratings = dict(session["anon"])
        most = serving_state().config.serving.max_anonymous_ratings
        if len(ratings) >= most and str(event.book_id) not in ratings:
            abort(400, f"an anonymous reader keeps at most {most} ratings")
        ratings[str(event.book_id)] = event.rating
        session["anon"] = ratings
    else:
        abort(400, "sign in or start as a new reader first")
    return redirect(url_for("web.book", book_id=event.book_id, rated=1))


@web.get("/me")
def me() -> str:
    if not session.get("reader") and "anon" not in session:
        return redirect(url_for("web.home"))
    anon = {int(k): v for k, v in session.get("anon", {}).items()}
    return render_template("me.html", anon_ratings=[{"book_id": b, "rating": r} for b, r in anon.items()])
