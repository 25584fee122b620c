"""The JSON API under /api/v1: recommendations, books, readers' ratings and explanations, posting ratings."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from readnext.events import InvalidEvent, parse_event
from serving_layer.openapi import OPENAPI
from serving_layer.recommend import contributions, reader_state, reasons, rerank
from serving_layer.state import ServingState, Snapshot, is_unavailable

api = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_QUERY = 200
MAX_IDS = 100


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _state() -> ServingState:
    return current_app.extensions["readnext"]


def _snapshot() -> Snapshot:
    snap = _state().snapshot()
    if snap is None:
        raise ApiError(503, "no model generation is published yet: run the batch layer first")
    return snap


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
    cfg = _state().config.serving
    return _number_arg("n", cfg.default_n, 1, cfg.max_n), _number_arg("offset", 0, 0, 1000)


def _controls() -> tuple[float, int]:
    cfg = _state().config.serving
    return _number_arg("popularity_penalty", cfg.popularity_penalty, 0.0, 10.0, float), _number_arg(
        "max_per_author", cfg.max_per_author, 0, 100
    )


def _items(snap: Snapshot, ranked: list[tuple[int, float]], history: dict[int, float]) -> list[dict[str, Any]]:
    why = reasons(snap, history, [b for b, _ in ranked]) if history else {}
    out = []
    for book_id, score in ranked:
        item = snap.catalog.summary(book_id)
        item["score"] = round(score, 6)
        item["reason"] = why[book_id] if history else "popular with readers"
        out.append(item)
    return out


def _recommend(snap: Snapshot, source: str, ranked: list[tuple[int, float]], history: dict[int, float]) -> Any:
    n, offset = _page()
    penalty, per_author = _controls()
    if source == "popular":  # already ordered by popularity: a penalty would turn it upside down
        penalty = 0.0
    page = rerank(snap, ranked, penalty, per_author)[offset : offset + n]
    return jsonify({"source": source, "generation": snap.model.generation, "items": _items(snap, page, history)})


def _depth(n: int, offset: int) -> int:
    """How many candidates to rank so that re-ranking still fills the page."""
    return min(3 * (n + offset), _state().config.batch.top_n * 3)


@api.get("/users/<int:user_id>/recommendations")
def user_recommendations(user_id: int) -> Any:
    snap = _snapshot()
    n, offset = _page()
    exclude_known = _bool_arg("exclude_known", True)
    try:
        reader = _state().hbase(lambda conn: reader_state(conn, _state().config, snap, user_id, _depth(n, offset)))
    except Exception as e:  # noqa: BLE001 - degrade, do not fail: HBase holds the readers' views
        if not is_unavailable(e):
            raise
        current_app.logger.warning("HBase unavailable, answering with popular books: %s", e)
        ranked = [(b, 0.0) for b in snap.catalog.popular[: _depth(n, offset)]]
        answer = _recommend(snap, "popular", ranked, {}).get_json()
        return jsonify(
            {**answer, "notice": "personal recommendations are unavailable right now; showing popular books"}
        )
    ranked = reader.ranked
    if not exclude_known and reader.vector is not None:
        ranked = snap.model.recommend(reader.vector, _depth(n, offset), exclude=set())
    return _recommend(snap, reader.source, ranked, reader.history)


def _rated_books(body: Any) -> dict[int, float]:
    if not isinstance(body, dict) or not isinstance(body.get("ratings"), list):
        raise ApiError(400, 'expected {"ratings": [{"book_id": int, "rating": 1-5}, ...], "n": int}')
    if not 1 <= len(body["ratings"]) <= 500:
        raise ApiError(400, "ratings must hold 1 to 500 entries")
    snap = _snapshot()
    history: dict[int, float] = {}
    for entry in body["ratings"]:
        try:
            event = parse_event({"user_id": 1, **entry} if isinstance(entry, dict) else {}, set(snap.catalog.books))
        except InvalidEvent as e:
            raise ApiError(400, f"rating {entry!r:.80}: {e}") from None
        history[event.book_id] = float(event.rating)
    return history


@api.post("/recommendations")
def anonymous_recommendations() -> Any:
    body = request.get_json(silent=True)
    history = _rated_books(body)
    snap = _snapshot()
    n = body.get("n", _state().config.serving.default_n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _state().config.serving.max_n:
        raise ApiError(400, f"n must be an integer between 1 and {_state().config.serving.max_n}")
    vector = snap.model.fold_in(history)
    ranked = snap.model.recommend(vector, _depth(n, 0), history)
    penalty, per_author = _controls()
    page = rerank(snap, ranked, penalty, per_author)[:n]
    return jsonify({"source": "fold-in", "generation": snap.model.generation, "items": _items(snap, page, history)})


def _book(snap: Snapshot, book_id: int):
    book = snap.catalog.books.get(book_id)
    if book is None:
        raise ApiError(404, f"no book {book_id}")
    return book


@api.get("/books/<int:book_id>")
def book(book_id: int) -> Any:
    snap = _snapshot()
    found = _book(snap, book_id)
    return jsonify({**found.summary(), "bayes_rating": found.bayes_rating, "generation": snap.model.generation})


@api.get("/books/<int:book_id>/similar")
def similar(book_id: int) -> Any:
    snap = _snapshot()
    found = _book(snap, book_id)
    n, _ = _page()
    items = []
    for other, score in found.similar[:n]:
        items.append({**snap.catalog.summary(other), "score": round(score, 6)})
    return jsonify({"book_id": book_id, "generation": snap.model.generation, "items": items})


@api.get("/books/popular")
def popular() -> Any:
    snap = _snapshot()
    n, offset = _page()
    ids = snap.catalog.popular[offset : offset + n]
    return jsonify({"generation": snap.model.generation, "items": [snap.catalog.books[b].summary() for b in ids]})


@api.get("/books/search")
def search() -> Any:
    snap = _snapshot()
    q = request.args.get("q", "").strip()
    if not q:
        raise ApiError(400, "q is required")
    if len(q) > MAX_QUERY:
        raise ApiError(400, f"q is longer than {MAX_QUERY} characters")
    n, offset = _page()
    hits = snap.catalog.search(q)
    return jsonify({"query": q, "total": len(hits), "items": [b.summary() for b in hits[offset : offset + n]]})


def _known_reader(snap: Snapshot, user_id: int):
    reader = _state().hbase(lambda conn: reader_state(conn, _state().config, snap, user_id, 1))
    if reader.source == "popular":
        raise ApiError(404, f"no reader {user_id} in the batch or speed views")
    return reader


@api.get("/users/<int:user_id>/ratings")
def user_ratings(user_id: int) -> Any:
    snap = _snapshot()
    reader = _known_reader(snap, user_id)
    items = []
    for book_id, stars in sorted(reader.history.items()):
        items.append({**snap.catalog.summary(book_id), "rating": int(stars)})
    return jsonify({"user_id": user_id, "source": reader.source, "items": items})


@api.get("/users/<int:user_id>/because/<int:book_id>")
def because(user_id: int, book_id: int) -> Any:
    snap = _snapshot()
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
def estimate(user_id: int) -> Any:
    snap = _snapshot()
    raw = request.args.get("books", "")
    try:
        ids = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ApiError(400, "books must be comma-separated book ids") from None
    if not 1 <= len(ids) <= MAX_IDS:
        raise ApiError(400, f"books must name 1 to {MAX_IDS} book ids")
    for b in ids:
        _book(snap, b)
    reader = _known_reader(snap, user_id)
    model = snap.model
    items = [
        {"book_id": b, "estimate": round(float(model.factors[model.row_of[b]] @ reader.vector), 6)}
        if b in model.row_of
        else {"book_id": b, "estimate": None}
        for b in ids
    ]
    return jsonify({"user_id": user_id, "source": reader.source, "items": items})


@api.post("/ratings")
def post_rating() -> Any:
    body = request.get_json(silent=True)
    snap = _snapshot()
    if not isinstance(body, dict):
        raise ApiError(400, 'expected {"user_id": int, "book_id": int, "rating": 1-5}')
    try:
        event = parse_event(body, set(snap.catalog.books))
    except InvalidEvent as e:
        raise ApiError(400, str(e)) from None
    try:
        event_id = _state().producer().send(event.user_id, event.book_id, event.rating, event.ts_ms)
    except Exception as e:  # noqa: BLE001 - any Kafka failure: the rating was not taken
        current_app.logger.warning("Kafka refused a rating: %s", e)
        raise ApiError(503, "ratings cannot be taken right now (Kafka unavailable); please retry") from None
    return jsonify({"event_id": event_id, "status": "accepted"}), 202


@api.get("/openapi.json")
def openapi() -> Any:
    return jsonify(OPENAPI)


@api.errorhandler(ApiError)
def api_error(error: ApiError) -> Any:
    return jsonify({"error": error.message, "status": error.status}), error.status


@api.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    return jsonify({"error": error.description, "status": error.code}), error.code


@api.errorhandler(Exception)
def unexpected(error: Exception) -> Any:
    current_app.logger.exception("unexpected error")
    if is_unavailable(error):
        return jsonify({"error": "a data store is unavailable; please retry", "status": 503}), 503
    return jsonify({"error": "internal error", "status": 500}), 500
