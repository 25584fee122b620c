"""A worker reads the speed view only for readers that may have a row: those on the ratings topic or in the view."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from readnext.clients import hbase_connection, kafka_admin, kafka_producer
from readnext.config import Config
from readnext.events import RatingEvent, RatingProducer, StreamEvent, ensure_topics, now_ms
from readnext.views import SpeedRow, SpeedView
from serving_layer.speed_readers import SpeedReaders
from speed_layer.view import update_readers
from tests.waiting import wait_for


def _readers(served, rescan_s: float, topic: str | None = None) -> SpeedReaders:
    """A follower of the `served` app's speed view and ratings topic (or `topic`), started and caught up."""
    config = served.config
    config = dataclasses.replace(
        config,
        serving=dataclasses.replace(config.serving, speed_readers_rescan_s=rescan_s),
        kafka=dataclasses.replace(config.kafka, ratings_topic=topic or config.kafka.ratings_topic),
    )
    readers = SpeedReaders(config, served.app.extensions["readnext"].hbase)
    assert readers.might_have(999_999), "not ready yet: every reader may have a row"
    wait_for(lambda: readers.ready, "the follower's first scan")
    return readers


def _event(user: int, book: int) -> dict[int, list[StreamEvent]]:
    return {user: [StreamEvent("x-0", 1, user, book, 4, 1000)]}


@pytest.fixture
def topic(served, unique_name) -> Iterator[Config]:
    """The `served` app's config with a ratings topic of the test's own (for events other tests must not read)."""
    kafka = dataclasses.replace(served.config.kafka, ratings_topic=unique_name)
    config = dataclasses.replace(served.config, kafka=kafka)
    ensure_topics(config)
    yield config
    admin = kafka_admin(config)
    admin.delete_topics([unique_name])
    admin.close()


def test_readers_come_from_the_views_keys_and_the_topic_and_bad_events_are_skipped(served, speed_rows, topic):
    speed_rows(_event(61, 3), on_topic=False)  # a row whose rating left the topic's window long ago
    readers = _readers(served, rescan_s=600, topic=topic.kafka.ratings_topic)
    assert readers.might_have(61), "seeded from the speed view's keys"
    assert not readers.might_have(62)
    producer = RatingProducer(topic)
    producer.send_raw(b"62", b"{not json")
    producer.send_raw(None, json.dumps({"user_id": "63", "book_id": 2, "rating": 4}).encode())
    producer.send_raw(None, json.dumps([64]).encode())
    producer.send(62, 5, 4)
    producer.close()
    wait_for(lambda: readers.might_have(62), "the reader named on the topic")
    assert not readers.might_have(63) and not readers.might_have(64), "events without an integer user_id"


def test_a_row_written_after_the_scan_without_a_rating_on_the_topic_is_found_by_the_next_scan(served, speed_rows):
    readers = _readers(served, rescan_s=2)
    speed_rows(_event(65, 3), on_topic=False)
    wait_for(lambda: readers.ready and readers.might_have(65), "the rescan", timeout=20)


def test_the_api_reads_the_speed_row_only_of_a_reader_that_may_have_one(served, speed_rows, monkeypatch):
    state = served.app.extensions["readnext"]
    monkeypatch.setattr(state, "speed_readers", _readers(served, rescan_s=600))
    me, path = served.reader(66), "/api/v1/users/66/recommendations"
    assert served.client.get(path, headers=me).get_json()["source"] == "batch"
    speed_rows(_event(66, 3), on_topic=False)
    assert served.client.get(path, headers=me).get_json()["source"] == "batch", "the view was not read"
    speed_rows(_event(66, 3))
    assert served.client.get(path, headers=me).get_json()["source"] == "speed"


def test_a_remembered_speed_row_is_read_again_once_the_topic_names_an_event_it_lacks(served, topic):
    """The follower hears of a rating before the speed job writes it: a row read in between is not remembered."""
    state = served.app.extensions["readnext"]
    reads: list[int] = []

    def counted(work):
        reads.append(1)
        return state.hbase(work)

    config = dataclasses.replace(topic, serving=dataclasses.replace(topic.serving, speed_readers_rescan_s=600))
    readers = SpeedReaders(config, counted)
    readers.start()
    wait_for(lambda: readers.ready, "the follower's first scan")
    model = state.snapshot().model
    producer = kafka_producer(config)
    conn = hbase_connection(config)

    def rate(book: int) -> StreamEvent:
        value = RatingEvent(67, book, 4, now_ms()).to_json()
        sent = producer.send(config.kafka.ratings_topic, key=b"67", value=value).get(timeout=10)
        return StreamEvent(f"{sent.topic}-{sent.partition}", sent.offset, 67, book, 4, now_ms())

    def read_twice(served_model=model) -> tuple[list[list | None], int]:
        """The events of the row two requests got, and how many HBase reads they took."""
        before = len(reads)
        rows: list[SpeedRow | None] = [readers.row(67, served_model) for _ in range(2)]
        return [r.events if r else None for r in rows], len(reads) - before

    try:
        first = rate(3)
        wait_for(lambda: readers.might_have(67), "the follower to hear of the rating")
        assert read_twice() == ([None, None], 2), "no row yet, though the topic names a rating: read every time"
        update_readers(conn, config, model, {67: [first]}, n=5)
        assert read_twice() == ([[first.as_row()]] * 2, 1), "the row holds the rating: remembered"

        second = rate(5)
        before = len(reads)
        wait_for(lambda: readers.row(67, model) and len(reads) > before, "the follower to hear of the second rating")
        assert read_twice() == ([[first.as_row()]] * 2, 2), "the row lacks the second rating: read every time"
        update_readers(conn, config, model, {67: [second]}, n=5)
        assert read_twice() == ([[first.as_row(), second.as_row()]] * 2, 1)

        flipped = dataclasses.replace(model, generation="another")
        assert read_twice(flipped)[1] == 2, "a row on another generation than the one served is read every time"
    finally:
        producer.close()
        with SpeedView(conn, config).writer() as out:
            out.delete(67)
        conn.close()
