"""The one definition of a valid rating event: parse_event against arbitrary input (Hypothesis)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readnext.events import EARLIEST_TS_MS, MAX_FUTURE_SKEW_MS, MAX_ID, SCHEMA, InvalidEvent, UnknownBook, parse_event

NOW = 1_800_000_000_000
BOUNDARY = [
    0,
    1,
    -1,
    5,
    6,
    MAX_ID,
    MAX_ID + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    EARLIEST_TS_MS - 1,
    EARLIEST_TS_MS,
    NOW + MAX_FUTURE_SKEW_MS,
    NOW + MAX_FUTURE_SKEW_MS + 1,
]
numbers = st.sampled_from(BOUNDARY) | st.integers() | st.floats()
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
fields = st.fixed_dictionaries(
    {"user_id": numbers, "book_id": numbers, "rating": numbers},
    optional={
        "ts": numbers | st.text(max_size=45) | st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
        "event_id": json_values,
    },
)


def _storable(event) -> None:
    """What every layer needs of a valid event: INT ids, a 1-5 rating, a time Spark and Hive can hold."""
    assert 1 <= event.user_id <= MAX_ID and 1 <= event.book_id <= MAX_ID
    assert 1 <= event.rating <= 5
    if event.ts_ms is not None:
        assert EARLIEST_TS_MS <= event.ts_ms <= NOW + MAX_FUTURE_SKEW_MS
        datetime.fromtimestamp(event.ts_ms / 1000, tz=timezone.utc)  # a real date, in Python's range too


@settings(max_examples=600)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | fields.map(json.dumps))
def test_any_input_is_an_event_that_every_layer_can_store_or_an_invalid_event(raw):
    try:
        event = parse_event(raw, known_books={1, 2, 3}, reference_ms=NOW)
    except InvalidEvent as e:
        assert str(e), "a reason is always given"
        return
    _storable(event)


@settings(max_examples=300)
@given(fields)
def test_dicts_from_the_api_follow_the_same_rules(body):
    try:
        event = parse_event(body, reference_ms=NOW)
    except InvalidEvent as e:
        assert str(e)
        return
    _storable(event)


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (2**63, "in the future"),
        ("1900-01-01T00:00:00Z", "before 2000"),
        ("9999-12-31T23:59:59Z", "in the future"),
        ("0001-01-01T00:00:00+01:00", "before 2000"),
        ("2026-01-01T00:00:00", "time zone"),
        ("yesterday", "RFC 3339"),
        (None, "RFC 3339"),
        (True, "RFC 3339"),
    ],
)
def test_timestamps_outside_the_window_are_refused_with_a_reason(ts, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event({"user_id": 1, "book_id": 1, "rating": 4, "ts": ts}, reference_ms=NOW)


def test_the_window_and_the_bounds_come_from_the_schema_file():
    ts = SCHEMA["properties"]["ts"]
    assert EARLIEST_TS_MS == ts["x-earliest-ms"] == ts["oneOf"][1]["minimum"]
    assert MAX_ID == SCHEMA["properties"]["user_id"]["maximum"] == 2**31 - 1  # Hive's INT
    at_edge = parse_event({"user_id": MAX_ID, "book_id": 1, "rating": 5.0, "ts": NOW + MAX_FUTURE_SKEW_MS}, None, NOW)
    assert at_edge.rating == 5 and at_edge.ts_ms == NOW + MAX_FUTURE_SKEW_MS


def test_an_unknown_book_is_its_own_kind_of_invalid():
    with pytest.raises(UnknownBook, match="unknown book 9"):
        parse_event(b'{"user_id": 1, "book_id": 9, "rating": 3}', known_books={1})


def test_the_writer_travels_with_the_event_and_is_bounded():
    event = parse_event({"user_id": 3, "book_id": 4, "rating": 5, "writer": "key:importer"})
    assert event.writer == "key:importer"
    assert parse_event(event.to_json()).writer == "key:importer"
    with pytest.raises(InvalidEvent, match="writer"):
        parse_event({"user_id": 3, "book_id": 4, "rating": 5, "writer": "x" * 65})
    with pytest.raises(InvalidEvent, match="writer"):
        parse_event({"user_id": 3, "book_id": 4, "rating": 5, "writer": 7})
