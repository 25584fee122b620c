"""The OpenAPI document of the JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any


def _param(name: str, where: str, kind: str, description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": {"type": kind},
        "description": description,
    }


_USER = _param("user_id", "path", "integer", "reader id")
_BOOK = _param("book_id", "path", "integer", "book id")
_PAGE = [_param("n", "query", "integer", "items per page (1-100)"), _param("offset", "query", "integer", "skip")]
_CONTROLS = [
    _param("popularity_penalty", "query", "number", "subtract this times the book's scaled log popularity"),
    _param("max_per_author", "query", "integer", "at most this many books of one author (0: no limit)"),
]
_ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for code, text in (
        ("400", "bad input"),
        ("404", "unknown book or reader"),
        ("413", "body too large"),
        ("503", "a dependency is down"),
    )
}


def _get(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params, "responses": {"200": {"description": "OK"}, **_ERRORS}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ReadNext API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "paths": {
        "/users/{user_id}/recommendations": _get(
            "Recommendations for a reader: the speed view when it is newer than the batch generation, else the "
            "batch view, else popular books; `source` says which answered.",
            [
                _USER,
                *_PAGE,
                _param("exclude_known", "query", "boolean", "leave out books the reader rated"),
                *_CONTROLS,
            ],
        ),
        "/recommendations": {
            "post": {
                "summary": "Recommendations for an anonymous reader, folded in exactly in the request.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["ratings"],
                                "properties": {
                                    "n": {"type": "integer"},
                                    "ratings": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["book_id", "rating"],
                                            "properties": {
                                                "book_id": {"type": "integer"},
                                                "rating": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "parameters": _CONTROLS,
                "responses": {"200": {"description": "OK"}, **_ERRORS},
            }
        },
        "/books/{book_id}": _get("A book's metadata and popularity.", [_BOOK]),
        "/books/{book_id}/similar": _get("Books most similar to this one.", [_BOOK, *_PAGE]),
        "/books/popular": _get("Popular books (Bayesian average rating).", _PAGE),
        "/books/search": _get("Search titles and authors.", [_param("q", "query", "string", "words", True), *_PAGE]),
        "/users/{user_id}/ratings": _get("The books a reader rated (batch and stream).", [_USER]),
        "/users/{user_id}/because/{book_id}": _get("Which rated books explain a recommendation.", [_USER, _BOOK]),
        "/users/{user_id}/estimate": _get(
            "Predicted preference for some books.",
            [_USER, _param("books", "query", "string", "ids, comma-separated", True)],
        ),
        "/ratings": {
            "post": {
                "summary": "Post a rating to Kafka; answers 202 with the event id.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "https://readnext.example/schemas/rating_event.schema.json"}
                        }
                    },
                },
                "responses": {"202": {"description": "accepted"}, **_ERRORS},
            }
        },
    },
    "components": {
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}
        }
    },
}
