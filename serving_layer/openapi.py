"""The OpenAPI document of the JSON API, served at /api/v1/openapi.json.

Self-contained: the rating event's schema (readnext/schemas) is inlined, every parameter carries
the limits the server enforces, and every answer, errors included, has a schema. Limits that
come from the configuration are read from it.
"""

from __future__ import annotations

import copy
from typing import Any

from readnext.config import Config
from readnext.events import MAX_ID, SCHEMA

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
    }


def _with(base: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_ref(base), _object(extra)]}


def _page_of(item: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return _object({**fields, "items": {"type": "array", "items": item}})


_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_SEP = "[ \\t\\r\\n]"  # what separates the words of a search (serving_layer/state.py query_words)
_ERRORS = {
    "400": "the request is malformed; `error` says what is wrong",
    "404": "no such book or reader",
    "503": "no generation is published yet, or a data store is unavailable: retry later",
}
_BODY_ERRORS = {"413": "the body is larger than the limit", "415": "the body is not JSON"}
_AUTH_ERRORS = {
    "401": "no bearer token, or one that is unknown, revoked or expired (WWW-Authenticate: Bearer)",
    "403": "the token is valid but may not do this: another reader's data, or a scope the key lacks",
}
_LIMITED = {"429": "too many requests from this client or account: retry after Retry-After seconds"}
# Operations that need a token, and which: a reader's own token, or a service key with this scope.
_READER_DATA = "the reader's own token, or a service key with the readers:read scope"
_WRITE = "the reader's own token (user_id must be theirs), or a service key with the ratings:write scope"
_BEARER = [{"bearer": []}]


def _answers(
    ok: str,
    schema: str | None,
    description: str = "OK",
    body: bool = False,
    secured: bool = False,
    limited: bool = False,
) -> dict[str, Any]:
    errors = {
        **_ERRORS,
        **(_BODY_ERRORS if body else {}),
        **(_AUTH_ERRORS if secured else {}),
        **(_LIMITED if limited else {}),
    }
    answer = {"description": description}
    if schema:
        answer["content"] = {_JSON: {"schema": _ref(schema)}}
    return {
        ok: answer,
        **{code: {"description": text, "content": {_JSON: {"schema": _ref("Error")}}} for code, text in errors.items()},
    }


def _get(
    summary: str, params: list[dict[str, Any]], schema: str, secured: str = "", limited: bool = False
) -> dict[str, Any]:
    """A GET operation; `secured` says which token it needs (none when empty)."""
    operation = {
        "summary": f"{summary} Needs {secured}." if secured else summary,
        "parameters": params,
        "responses": _answers("200", schema, secured=bool(secured), limited=limited),
    }
    if secured:
        operation["security"] = _BEARER
    return {"get": operation}


def _event_schema() -> dict[str, Any]:
    """The rating event's schema as a request body, inlined (its `ts` window's upper end moves with the clock).

    Without `writer`: the server sets it from the token and refuses it in a body.
    """
    schema = {k: copy.deepcopy(v) for k, v in SCHEMA.items() if not k.startswith("$")}
    del schema["properties"]["writer"]
    return schema


def openapi_document(config: Config) -> dict[str, Any]:
    serving = config.serving
    user = _param("user_id", "path", _ID, "reader id")
    book = _param("book_id", "path", _ID, "book id")
    page = [
        _param("n", "query", {"type": "integer", "minimum": 1, "maximum": serving.max_n}, "items per page"),
        _param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 1000}, "items to skip"),
    ]
    controls = [
        _param(
            "popularity_penalty",
            "query",
            {"type": "number", "minimum": 0, "maximum": 10},
            "subtract this times the book's scaled log popularity from its score",
        ),
        _param(
            "max_per_author",
            "query",
            {"type": "integer", "minimum": 0, "maximum": 100},
            "at most this many books of one author per page (0: no limit)",
        ),
    ]
    anonymous = {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "minItems": 1,
                "maxItems": serving.max_anonymous_ratings,
                "items": {
                    "type": "object",
                    "properties": {"book_id": _ID, "rating": {"type": "integer", "minimum": 1, "maximum": 5}},
                    "required": ["book_id", "rating"],
                    "additionalProperties": False,
                },
            },
            "n": {"type": "integer", "minimum": 1, "maximum": serving.max_n},
        },
        "required": ["ratings"],
        "additionalProperties": False,
    }
    nullable_int, nullable_number = {"type": ["integer", "null"]}, {"type": ["number", "null"]}
    schemas = {
        "Error": _object({"error": {"type": "string"}, "status": {"type": "integer"}}),
        "Book": _object(
            {
                "book_id": {"type": "integer"},
                "title": {"type": "string"},
                "authors": {"type": "string"},
                "year": nullable_int,
                "average_rating": nullable_number,
                "cover_url": {"type": ["string", "null"]},
                "ratings_count": {"type": "integer"},
            }
        ),
        "Item": _with(
            "Book",
            {
                "score": {"type": "number"},
                "reason": {
                    "type": ["string", "null"],
                    "description": "the rated book that adds most to the score; null when none adds to it",
                },
            },
        ),
        "Recommendations": _object(
            {
                "source": {"enum": ["speed", "batch", "popular", "fold-in"]},
                "generation": {"type": "string"},
                "items": {"type": "array", "items": _ref("Item")},
                "notice": {"type": "string", "description": "present when personal answers are unavailable"},
            },
            optional=("notice",),
        ),
        "BookDetail": _with("Book", {"bayes_rating": nullable_number, "generation": {"type": "string"}}),
        "Similar": _page_of(
            _with("Book", {"score": {"type": "number"}}), book_id={"type": "integer"}, generation={"type": "string"}
        ),
        "Popular": _page_of(_ref("Book"), generation={"type": "string"}),
        "Search": _page_of(_ref("Book"), query={"type": "string"}, total={"type": "integer"}),
        "Ratings": _page_of(
            _with("Book", {"rating": {"type": "integer"}}),
            user_id={"type": "integer"},
            source={"enum": ["speed", "batch"]},
        ),
        "Because": _page_of(
            _with("Book", {"contribution": {"type": "number"}}),
            user_id={"type": "integer"},
            book_id={"type": "integer"},
            score={"type": "number"},
        ),
        "Estimates": _page_of(
            _object({"book_id": {"type": "integer"}, "estimate": nullable_number}),
            user_id={"type": "integer"},
            source={"enum": ["speed", "batch"]},
        ),
        "Accepted": _object({"event_id": {"type": "string"}, "status": {"const": "accepted"}}),
        "Status": _object(
            {
                "generation": {"type": ["object", "null"], "description": "the served generation, null before one"},
                "quality": {"type": "array", "items": {"type": "object"}, "description": "the last generations"},
                "speed_layer": {
                    "type": ["object", "null"],
                    "description": "lag, throughput, latency; null without Prometheus",
                },
                "health": {
                    "type": "object",
                    "additionalProperties": _object({"ok": {"type": "boolean"}, "detail": {}}),
                },
            }
        ),
        "Credentials": {
            "type": "object",
            "properties": {
                "username": {"type": "string", "minLength": 1, "maxLength": 256},
                "password": {"type": "string", "minLength": 1, "maxLength": 256},
            },
            "required": ["username", "password"],
            "additionalProperties": False,
        },
        "Token": _object(
            {
                "token": {"type": "string"},
                "token_type": {"const": "Bearer"},
                "user_id": {"type": "integer"},
                "expires_in": {"type": "integer", "description": "seconds"},
            }
        ),
        "RatingEvent": _event_schema(),
        "AnonymousRatings": anonymous,
    }

    def post(
        summary: str,
        body: str,
        ok: str,
        answer: str,
        params: list[dict[str, Any]] | None = None,
        secured: str = "",
        limited: bool = False,
    ) -> Any:
        operation = {
            "summary": f"{summary} Needs {secured}." if secured else summary,
            "parameters": params or [],
            "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(body)}}},
            "responses": _answers(ok, answer, body=True, secured=bool(secured), limited=limited),
        }
        if secured:
            operation["security"] = _BEARER
        return {"post": operation}

    tokens = post("A reader's token for their username and password.", "Credentials", "201", "Token", limited=True)
    tokens["post"]["responses"]["401"] = {
        "description": "wrong username or password",
        "content": {_JSON: {"schema": _ref("Error")}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ReadNext API",
            "version": "1",
            "description": "Errors are JSON ({error, status}); answers about one reader carry Cache-Control: no-store. "
            "Books, search, popular and similar books, and anonymous recommendations are public; a reader's "
            "data and posting ratings need a bearer token (docs/security.md). Sign-in, ratings, search and "
            "anonymous recommendations are rate-limited per client and per account (429 with Retry-After).",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/users/{user_id}/recommendations": _get(
                "Recommendations for a reader: the speed view when it is newer than the batch generation, else the "
                "batch view, else popular books; `source` says which answered.",
                [
                    user,
                    *page,
                    _param("exclude_known", "query", {"type": "boolean"}, "leave out books the reader rated"),
                    *controls,
                ],
                "Recommendations",
                secured=_READER_DATA,
            ),
            "/recommendations": post(
                "Recommendations for an anonymous reader, folded in exactly in the request.",
                "AnonymousRatings",
                "200",
                "Recommendations",
                controls,
                limited=True,
            ),
            "/books/{book_id}": _get("A book's metadata and popularity.", [book], "BookDetail"),
            "/books/{book_id}/similar": _get("Books most similar to this one.", [book, *page], "Similar"),
            "/books/popular": _get("Popular books (Bayesian average rating).", page, "Popular"),
            "/books/search": _get(
                "Search titles and authors.",
                [
                    _param(
                        "q",
                        "query",
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            # At most max_query_words words, split at spaces, tabs and line breaks; each word
                            # ends at a separator or at the end, so that matching never backtracks far.
                            "pattern": f"^{_SEP}*([^{_SEP[1:-1]}]+({_SEP}+|$)){{0,{config.limits.max_query_words}}}$",
                        },
                        f"words to find in titles and authors (at most {config.limits.max_query_words})",
                        required=True,
                    ),
                    *page,
                ],
                "Search",
                limited=True,
            ),
            "/users/{user_id}/ratings": _get(
                "The books a reader rated (batch and stream).", [user], "Ratings", secured=_READER_DATA
            ),
            "/users/{user_id}/because/{book_id}": _get(
                "Which rated books explain a recommendation.", [user, book], "Because", secured=_READER_DATA
            ),
            "/users/{user_id}/estimate": _get(
                "Predicted preference for some books.",
                [
                    user,
                    _param(
                        "books",
                        "query",
                        {"type": "string", "pattern": r"^[0-9]{1,10}(,[0-9]{1,10}){0,99}$"},
                        "1 to 100 book ids, comma-separated",
                        required=True,
                    ),
                ],
                "Estimates",
                secured=_READER_DATA,
            ),
            "/ratings": post(
                "Post a rating to Kafka; answers 202 with the event id once the broker has it. An unknown book is 404.",
                "RatingEvent",
                "202",
                "Accepted",
                secured=_WRITE,
                limited=True,
            ),
            "/tokens": tokens,
            "/status": _get(
                "The running system for operators: the served generation, the quality of the last generations, "
                "the speed layer's lag and throughput, the stores' health (the web UI's /status shows the same).",
                [],
                "Status",
                limited=True,
            ),
            "/tokens/current": {
                "delete": {
                    "summary": "Revoke the reader token this request carries (403 for a service key: revoke keys "
                    "with python -m serving_layer keys revoke).",
                    "security": _BEARER,
                    "responses": _answers("204", None, "revoked", secured=True),
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A reader's token (sign-in in the web UI, or POST /tokens) or a service key "
                    "(python -m serving_layer keys create).",
                }
            },
        },
    }
