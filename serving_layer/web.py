"""The web UI: server-rendered pages over the same state as the JSON API.

A reader signs up or signs in with a username and a password (their ratings go to Kafka and the
speed layer refreshes their recommendations within seconds) or starts as a new anonymous reader
(ratings kept in the signed session cookie and folded in exactly on each request). A signed-in
session holds the reader's token: the page's script calls the API with it, and signing out
revokes it, so a copy of the cookie is worth nothing afterwards. With `[serving] demo_sign_in` a
goodbooks reader can also be signed in as by id alone (the page says it is a demo). Forms carry
a CSRF token; Jinja escapes everything it prints.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from readnext.accounts import AccountError, normal_name
from readnext.events import MAX_ID, InvalidEvent, parse_event
from serving_layer import auth, status
from serving_layer.state import (
    Snapshot,
    book_summary,
    current_snapshot,
    is_unavailable,
    query_words,
    serving_state,
)

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


@web.before_app_request
def check_session() -> None:
    """The signed-in reader (g.reader) only while the session's token is valid: sign-out revoked it."""
    g.reader = g.writer = None
    token = session.get("token")
    if request.blueprint != "web" or not token:
        return
    try:
        found = auth.lookup(token)
    except Exception as e:  # noqa: BLE001 - HBase away: serve the page signed out, keep the session
        if not is_unavailable(e):
            raise
        return
    if found is None or found.reader_id != session.get("reader"):
        session.clear()
    else:
        g.reader, g.writer = found.reader_id, found.writer


@web.app_context_processor
def template_globals() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "reader": g.get("reader"),
        "username": session.get("username"),
        "demo": session.get("demo", False),
        "demo_sign_in": serving_state().config.serving.demo_sign_in,
        "anonymous": "anon" in session,
        "min_password": serving_state().config.accounts.min_password_length,
    }


def _signed_in(reader: int, token: str, username: str | None, demo: bool = False) -> Any:
    session.clear()
    session.update(reader=reader, token=token, username=username, demo=demo)
    return redirect(url_for("web.me"))


@web.errorhandler(Exception)
def unexpected(error: Exception) -> Any:
    """A store that is away is 503 with advice, not a 500 (sign-in and sign-up need HBase)."""
    if isinstance(error, HTTPException):
        return error
    if is_unavailable(error):
        current_app.logger.warning("a data store is unavailable: %s", error)
        return ServiceUnavailable("a data store is unavailable; please try again in a moment")
    current_app.logger.exception("unexpected error")
    return InternalServerError()


def _books(snap: Snapshot, ids: list[int]) -> list[dict[str, Any]]:
    return [book_summary(snap.catalog.books[b]) for b in ids if b in snap.catalog.books]


@web.get("/")
def home() -> str:
    snap = current_snapshot()
    words = query_words(request.args.get("q", ""))[: serving_state().config.limits.max_query_words]
    q = " ".join(words)[:200]
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


@web.get("/signin")
def signin_page() -> str:
    return render_template("signin.html")


@web.post("/signin")
def signin() -> Any:
    if "reader" in request.form:
        if not serving_state().config.serving.demo_sign_in:
            abort(400, "signing in by reader id is off; sign in with your username and password")
        try:
            reader = int(request.form["reader"])
        except ValueError:
            abort(400, "a reader id is a number")
        if not 1 <= reader <= MAX_ID:
            abort(400, "no such reader id")
        return _signed_in(reader, auth.demo_sign_in(reader), None, demo=True)
    signed_in = auth.sign_in(request.form.get("username", ""), request.form.get("password", ""))
    if signed_in is None:
        return render_template("signin.html", error="Wrong username or password."), 401
    return _signed_in(*signed_in, normal_name(request.form["username"]))


@web.get("/signup")
def signup_page() -> str:
    return render_template("signup.html")


@web.post("/signup")
def signup() -> Any:
    username = request.form.get("username", "")
    try:
        reader, token = auth.sign_up(username, request.form.get("password", ""))
    except AccountError as e:
        return render_template("signup.html", error=str(e), username=username), 400
    return _signed_in(reader, token, normal_name(username))


@web.post("/anonymous")
def anonymous() -> Any:
    if session.get("token"):
        _sign_out()
    session["anon"] = {}
    return redirect(url_for("web.home"))


def _sign_out() -> None:
    if session.get("token"):
        auth.revoke(session["token"])
    session.clear()


@web.post("/signout")
def signout() -> Any:
    _sign_out()
    return redirect(url_for("web.home"))


@web.post("/rate")
def rate() -> Any:
    snap = current_snapshot()
    try:
        event = parse_event(
            {
                "user_id": g.reader or 1,
                "book_id": int(request.form.get("book_id", "")),
                "rating": int(request.form.get("rating", "")),
            },
            snap.catalog.books.keys(),
        )
    except (ValueError, InvalidEvent) as e:
        abort(400, f"cannot take that rating: {e}")
    if g.reader:
        try:
            serving_state().producer().send(event.user_id, event.book_id, event.rating, writer=g.writer)
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


@web.get("/status")
def status_page() -> str:
    report = status.report(serving_state())
    return render_template("status.html", status=report, chart=status.chart(report["quality"]))


@web.get("/me")
def me() -> Any:
    if not g.reader and "anon" not in session:
        return redirect(url_for("web.home"))
    anon = {int(k): v for k, v in session.get("anon", {}).items()}
    page = render_template(
        "me.html",
        anon_ratings=[{"book_id": b, "rating": r} for b, r in anon.items()],
        token=session.get("token", "") if g.reader else "",
    )
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"  # the page carries the reader's token
    return response
