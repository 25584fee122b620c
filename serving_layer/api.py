"""The JSON API under /api/v1: recommendations, books, readers' ratings and explanations, posting ratings."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from readnext.events import MAX_ID, InvalidEvent, UnknownBook, json_integer, parse_event
from serving_layer import auth, status
from serving_layer.metrics import ANSWERS, FOLD_IN_SECONDS, HBASE_SECONDS
from serving_layer.openapi import openapi_document
from serving_layer.recommend import ReaderState, contributions, reader_state, reasons, rerank
from serving_layer.state import (
    Snapshot,
    book_summary,
    current_snapshot,
    is_unavailable,
    query_words,
    serving_state,
)

api = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_QUERY = 200
MAX_IDS = 100
_PRIVATE: set[str] = set()


def private(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view whose answers are about one reader: they carry Cache-Control: no-store."""
    _PRIVATE.add(f"{api.name}.{view.__name__}")
    return view


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# Headers that werkzeug's and Flask-Limiter's errors carry and a client needs (405, 401, 429).
_ERROR_HEADERS = {"allow", "www-authenticate", "retry-after"}


def _json_body() -> Any:
    """The request's JSON document; 400/413/415 with the reason when it is not one within the size limit."""
    if not request.is_json:
        raise ApiError(415, "expected a JSON body (Content-Type: application/json)")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None:  # chunked: werkzeug would cut the body at the limit silently
        terminated = request.environ.get("wsgi.input_terminated")
        raw = request.environ["wsgi.input"].read(limit + 1) if terminated else b""
        if len(raw) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
    else:
        raw = request.get_data(cache=True)  # a declared length over the limit is refused with 413 here
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(400, "the body is not JSON we accept: nested too deeply") from None
    except ValueError as e:
        raise ApiError(400, f"the body is not valid JSON: {str(e)[:120]}") from None


def _id(value: int, what: str) -> int:
    """Path ids beyond what any layer stores name nothing."""
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"no {what} {value}")
    return value


def _number_arg(name: str, default: float, low: float, high: float, kind: type = int) -> Any:
    """A numeric query parameter of `kind` within [low, high]; 400 otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be {'an integer' if kind is int else 'a number'}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _bool_arg(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false")


def _page() -> tuple[int, int]:
    cfg = serving_state().config.serving
    return _number_arg("n", cfg.default_n, 1, cfg.max_n), _number_arg("offset", 0, 0, 1000)


def _controls() -> tuple[float, int]:
    cfg = serving_state().config.serving
    return _number_arg("popularity_penalty", cfg.popularity_penalty, 0.0, 10.0, float), _number_arg(
        "max_per_author", cfg.max_per_author, 0, 100
    )


def _items(
    snap: Snapshot, ranked: list[tuple[int, float]], history: dict[int, float], stored: Mapping[int, int]
) -> list[dict[str, Any]]:
    why = reasons(snap, history, [b for b, _ in ranked], stored) if history else {}
    out = []
    for book_id, score in ranked:
        item = snap.catalog.summary(book_id)
        item["score"] = round(score, 6)
        item["reason"] = why[book_id] if history else "popular with readers"
        out.append(item)
    return out


def _recommend(
    snap: Snapshot,
    source: str,
    ranked: list[tuple[int, float]],
    history: dict[int, float],
    stored: Mapping[int, int],
    n: int,
    offset: int,
) -> Any:
    penalty, per_author = _controls()
    if source == "popular":  # already ordered by popularity: a penalty would turn it upside down
        penalty = 0.0
    page = rerank(snap, ranked, penalty, per_author, offset + n)[offset:]
    return jsonify(
        {"source": source, "generation": snap.model.generation, "items": _items(snap, page, history, stored)}
    )


def _depth(n: int, offset: int) -> int:
    """How many candidates to rank so that re-ranking still fills the page."""
    return min(3 * (n + offset), serving_state().config.batch.top_n * 3)


def _reader_state(snap: Snapshot, user_id: int, depth: int) -> ReaderState:
    """The merged views of a reader, reading the speed view only for readers that may have a row."""
    state = serving_state()
    return reader_state(state.hbase, snap, user_id, depth, state.speed_readers.row(user_id, snap.model))


@api.get("/users/<int:user_id>/recommendations")
@private
def user_recommendations(user_id: int) -> Any:
    snap = current_snapshot()
    _id(user_id, "reader")
    n, offset = _page()
    exclude_known = _bool_arg("exclude_known", True)
    try:
        auth.may_read(user_id)
        with HBASE_SECONDS.time():
            reader = _reader_state(snap, user_id, _depth(n, offset))
    except Exception as e:  # noqa: BLE001 - degrade, do not fail: HBase holds the readers' views and tokens
        # Popular books are public: answering them while no token can be checked reveals nothing.
        if not is_unavailable(e):
            raise
        current_app.logger.warning("HBase unavailable, answering with popular books: %s", e)
        ANSWERS.labels("degraded").inc()
        ranked = [(b, 0.0) for b in snap.catalog.popular[: _depth(n, offset)]]
        answer = _recommend(snap, "popular", ranked, {}, {}, n, offset).get_json()
        return jsonify(
            {**answer, "notice": "personal recommendations are unavailable right now; showing popular books"}
        )
    ranked = reader.ranked
    if not exclude_known and reader.vector is not None:
        ranked = snap.model.recommend(reader.vector, _depth(n, offset), exclude=set())
    ANSWERS.labels(reader.source).inc()
    return _recommend(snap, reader.source, ranked, reader.history, reader.reasons, n, offset)


def _rated_books(snap: Snapshot, body: Any) -> dict[int, float]:
    shape = 'expected {"ratings": [{"book_id": int, "rating": 1-5}, ...], "n": int}'
    if not isinstance(body, dict) or not isinstance(body.get("ratings"), list) or set(body) - {"ratings", "n"}:
        raise ApiError(400, shape)
    most = serving_state().config.serving.max_anonymous_ratings
    if not 1 <= len(body["ratings"]) <= most:
        raise ApiError(400, f"ratings must hold 1 to {most} entries")
    history: dict[int, float] = {}
    for i, entry in enumerate(body["ratings"]):
        if not isinstance(entry, dict) or set(entry) != {"book_id", "rating"}:
            raise ApiError(400, f"ratings[{i}]: {shape}")
        try:
            event = parse_event({"user_id": 1, **entry}, snap.catalog.books.keys())
        except UnknownBook as e:
            raise ApiError(404, f"ratings[{i}]: {e}") from None
        except InvalidEvent as e:
            raise ApiError(400, f"ratings[{i}]: {e}") from None
        history[event.book_id] = float(event.rating)
    return history


@api.post("/recommendations")
@private
def anonymous_recommendations() -> Any:
    body = _json_body()
    snap = current_snapshot()
    history = _rated_books(snap, body)
    n = json_integer(body.get("n", serving_state().config.serving.default_n))
    if n is None or not 1 <= n <= serving_state().config.serving.max_n:
        raise ApiError(400, f"n must be an integer between 1 and {serving_state().config.serving.max_n}")
    with FOLD_IN_SECONDS.time():
        folded = snap.model.lists([history], _depth(n, 0))[0]
    ANSWERS.labels("fold-in").inc()
    penalty, per_author = _controls()
    page = rerank(snap, folded.ranked, penalty, per_author, n)
    items = _items(snap, page, history, folded.reason_of())
    return jsonify({"source": "fold-in", "generation": snap.model.generation, "items": items})


def _book(snap: Snapshot, book_id: int):
    book = snap.catalog.books.get(_id(book_id, "book"))
    if book is None:
        raise ApiError(404, f"no book {book_id}")
    return book


@api.get("/books/<int:book_id>")
def book(book_id: int) -> Any:
    snap = current_snapshot()
    found = _book(snap, book_id)
    return jsonify({**book_summary(found), "bayes_rating": found.bayes_rating, "generation": snap.model.generation})


@api.get("/books/<int:book_id>/similar")
def similar(book_id: int) -> Any:
    snap = current_snapshot()
    found = _book(snap, book_id)
    n, _ = _page()
    items = []
    for other, score in found.similar[:n]:
        items.append({**snap.catalog.summary(other), "score": round(score, 6)})
    return jsonify({"book_id": book_id, "generation": snap.model.generation, "items": items})


@api.get("/books/popular")
def popular() -> Any:
    snap = current_snapshot()
    n, offset = _page()
    ids = snap.catalog.popular[offset : offset + n]
    return jsonify({"generation": snap.model.generation, "items": [book_summary(snap.catalog.books[b]) for b in ids]})


@api.get("/books/search")
def search() -> Any:
    snap = current_snapshot()
    q = request.args.get("q", "")
    if not q:
        raise ApiError(400, "q is required")
    if len(q) > MAX_QUERY:
        raise ApiError(400, f"q is longer than {MAX_QUERY} characters")
    most = serving_state().config.limits.max_query_words
    if len(query_words(q)) > most:
        raise ApiError(400, f"q has more than {most} words")
    n, offset = _page()
    hits = snap.catalog.search(q.strip()) if q.strip() else []  # only spaces: nothing to find
    return jsonify({"query": q, "total": len(hits), "items": [book_summary(b) for b in hits[offset : offset + n]]})


def _known_reader(snap: Snapshot, user_id: int):
    _id(user_id, "reader")
    auth.may_read(user_id)
    reader = _reader_state(snap, user_id, 1)
    if reader.source == "popular":
        raise ApiError(404, f"no reader {user_id} in the batch or speed views")
    return reader


@api.get("/users/<int:user_id>/ratings")
@private
def user_ratings(user_id: int) -> Any:
    snap = current_snapshot()
    reader = _known_reader(snap, user_id)
    items = []
    for book_id, stars in sorted(reader.history.items()):
        items.append({**snap.catalog.summary(book_id), "rating": int(stars)})
    return jsonify({"user_id": user_id, "source": reader.source, "items": items})


@api.get("/users/<int:user_id>/because/<int:book_id>")
@private
def because(user_id: int, book_id: int) -> Any:
    snap = current_snapshot()
    _book(snap, book_id)
    reader = _known_reader(snap, user_id)
    parts = contributions(snap, reader.history, book_id)
    items = [
        {
            **snap.catalog.summary(b),
            "contribution": round(c, 6),
        }
        for b, c in parts[:20]
    ]
    return jsonify(
        {"user_id": user_id, "book_id": book_id, "score": round(sum(c for _, c in parts), 6), "items": items}
    )


@api.get("/users/<int:user_id>/estimate")
@private
def estimate(user_id: int) -> Any:
    snap = current_snapshot()
    raw = request.args.get("books", "")
    parts = raw.split(",")
    if not raw or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        raise ApiError(400, "books must be comma-separated book ids") from None
    ids = [int(p) for p in parts]
    if not 1 <= len(ids) <= MAX_IDS:
        raise ApiError(400, f"books must name 1 to {MAX_IDS} book ids")
    for b in ids:
        _book(snap, b)
    reader = _known_reader(snap, user_id)
    items = [
        {"book_id": b, "estimate": None if e is None else round(e, 6)}
        for b, e in zip(ids, snap.model.estimates(reader.vector, ids), strict=True)
    ]
    return jsonify({"user_id": user_id, "source": reader.source, "items": items})


@api.post("/ratings")
@private
def post_rating() -> Any:
    auth.required()
    body = _json_body()
    snap = current_snapshot()
    if not isinstance(body, dict):
        raise ApiError(400, 'expected {"user_id": int, "book_id": int, "rating": 1-5}')
    if "writer" in body:
        raise ApiError(400, "writer is set by the server from the token")
    try:
        event = parse_event(body, snap.catalog.books.keys())
    except UnknownBook as e:
        raise ApiError(404, str(e)) from None
    except InvalidEvent as e:
        raise ApiError(400, str(e)) from None
    writer = auth.may_write(event.user_id).writer
    try:
        event_id = serving_state().producer().send(event.user_id, event.book_id, event.rating, event.ts_ms, writer)
    except Exception as e:  # noqa: BLE001 - any Kafka failure: the rating was not taken
        current_app.logger.warning("Kafka refused a rating: %s", e)
        raise ApiError(503, "ratings cannot be taken right now (Kafka unavailable); please retry") from None
    return jsonify({"event_id": event_id, "status": "accepted"}), 202


def _credentials(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict) or set(body) != {"username", "password"}:
        raise ApiError(400, 'expected {"username": text, "password": text}')
    if not all(isinstance(v, str) and 1 <= len(v) <= 256 for v in body.values()):
        raise ApiError(400, "username and password are text of 1 to 256 characters")
    return body["username"], body["password"]


@api.post("/tokens")
@private
def issue_token() -> Any:
    """A reader's token for their username and password (as the web UI's sign-in issues one)."""
    username, password = _credentials(_json_body())
    signed_in = auth.sign_in(username, password)
    if signed_in is None:
        raise ApiError(401, "wrong username or password")
    reader, token = signed_in
    ttl = serving_state().config.accounts.token_ttl_s
    return jsonify({"token": token, "token_type": "Bearer", "user_id": reader, "expires_in": ttl}), 201


@api.delete("/tokens/current")
@private
def revoke_token() -> Any:
    """Revoke the reader token this request carries (service keys: `python -m serving_layer keys revoke`)."""
    if auth.required().kind != "reader":
        raise ApiError(403, "service keys are revoked with python -m serving_layer keys revoke")
    auth.revoke(auth.bearer_token() or "")
    return "", 204


@api.get("/status")
def system_status() -> Any:
    """The running system for operators (the web UI's /status shows the same)."""
    return jsonify(status.report(serving_state()))


@api.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document(serving_state().config))


@api.after_request
def no_store(response: Any) -> Any:
    if request.endpoint in _PRIVATE:
        response.headers["Cache-Control"] = "no-store"
    return response


def json_error(status: int, message: str) -> Any:
    """The API's one error shape."""
    return jsonify({"error": message, "status": status}), status


def http_error(error: HTTPException) -> Any:
    """Flask's and werkzeug's own errors (routing, 405 with its Allow header, 413) in the API's shape."""
    body, status = json_error(error.code or 500, error.description or error.name)
    return body, status, [(k, v) for k, v in error.get_headers() if k.lower() in _ERROR_HEADERS]


@api.errorhandler(ApiError)
def api_error(error: ApiError) -> Any:
    return json_error(error.status, error.message)


@api.errorhandler(Exception)
def unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):  # raised by Flask itself (e.g. a body over the limit)
        return http_error(error)
    current_app.logger.exception("unexpected error")
    if is_unavailable(error):
        return json_error(503, "a data store is unavailable; please retry")
    return json_error(500, "internal error")
