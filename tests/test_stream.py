"""The streaming job against real Kafka, HBase and Hive: speed view, master dataset, dead letters."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from batch_layer.generation import build_generation
from readnext import artifacts
from readnext.clients import hbase_connection, kafka_consumer, kafka_producer
from readnext.events import EARLIEST_TS_MS, RatingProducer
from readnext.model import ModelHolder
from readnext.views import GenerationViews, SpeedView
from speed_layer import stream
from speed_layer.kafka_read import planned_offsets
from tests.waiting import committed_events, master_timeout, wait_for


def _master_rows(spark, config, job, produced: int) -> int:
    """Stream rows in the master dataset once the master query has committed `produced` events."""
    wait_for(
        lambda: committed_events(config.speed.checkpoint_dir / "master") >= produced or job.failures(),
        f"the master-dataset query to commit {produced} events",
        master_timeout(config),
    )
    assert not job.failures(), job.failures()
    spark.catalog.refreshTable("ratings")  # the query appended from its own (cloned) session
    return spark.table("ratings").where("source = 'stream'").count()


def test_stream_updates_speed_view_master_dataset_and_dead_letters(live, spark):
    config, rows, job = live
    producer = RatingProducer(config)
    producer.send(5, 81, 5)  # book 81: in the catalog, unknown to the model (nobody rated it)
    producer.send(5, 2, 5)
    producer.send(5, 2, 1)  # a re-rating: the latest wins
    producer.send(1000, 3, 4)  # a reader the batch never saw
    producer.send_raw(b"7", b"{not json")
    producer.send_raw(b"7", json.dumps({"user_id": 7, "book_id": 3, "rating": 6}).encode())
    producer.send_raw(b"7", json.dumps({"user_id": 7, "book_id": 4242, "rating": 3}).encode())
    producer.send_raw(b"7", json.dumps({"user_id": 7, "rating": 3}).encode())
    producer.flush()
    producer.close()

    conn = hbase_connection(config)
    speed = SpeedView(conn, config)
    wait_for(lambda: len(speed.events([5]).get(5, [])) == 3, "reader 5's 3 events")
    wait_for(lambda: speed.reader(1000), "new reader 1000's speed row")
    holder = ModelHolder(artifacts.open_store(config))
    holder.refresh()
    model = holder.model
    history = {b: r for u, b, r in rows if u == 5} | {81: 5, 2: 1}
    row = speed.reader(5)
    assert np.allclose(row.vector, model.fold_in(history), atol=1e-5)
    recs = set(row.books.tolist())
    assert recs and not recs & set(history), "known books, stream ones included, are never recommended"
    assert 81 not in recs
    assert np.allclose(speed.reader(1000).vector, model.fold_in({3: 4}), atol=1e-5)
    conn.close()

    assert _master_rows(spark, config, job, produced=8) == 4
    stored = {(r.user_id, r.book_id, r.rating) for r in spark.table("ratings").where("source = 'stream'").collect()}
    assert stored == {(5, 81, 5), (5, 2, 5), (5, 2, 1), (1000, 3, 4)}

    consumer = kafka_consumer(
        config, config.kafka.dead_letter_topic, auto_offset_reset="earliest", consumer_timeout_ms=20_000
    )
    dead = []
    for record in consumer:
        dead.append((record.value, dict(record.headers)["reason"].decode()))
        if len(dead) == 4:
            break
    consumer.close()
    reasons = {value: reason for value, reason in dead}
    assert reasons[b"{not json"].startswith("not JSON")
    assert reasons[json.dumps({"user_id": 7, "book_id": 3, "rating": 6}).encode()] == "rating 6 outside 1-5"
    assert reasons[json.dumps({"user_id": 7, "book_id": 4242, "rating": 3}).encode()] == "unknown book 4242"
    assert reasons[json.dumps({"user_id": 7, "rating": 3}).encode()] == "missing field book_id"


def test_a_backlog_is_worked_through_in_capped_micro_batches(live, spark, tmp_path):
    """A speed query that starts behind plans at most `max_events_per_batch` events per micro-batch, and
    its readers' rows hold every event."""
    config, _, job = live
    job.stop()  # query names are unique in a session: the capped query replaces it
    producer = RatingProducer(config)
    for k in range(12):
        producer.send(1001 + k % 6, 2 + k, 4)
    producer.flush()
    checkpoint = tmp_path / "capped"
    capped = dataclasses.replace(
        config, speed=dataclasses.replace(config.speed, max_events_per_batch=5, checkpoint_dir=checkpoint)
    )
    second = stream.StreamingJob(spark, capped, queries=("speed",)).start()
    try:
        wait_for(lambda: committed_events(checkpoint / "speed") >= 12 or second.failures(), "12 events committed", 120)
    finally:
        second.stop()
    assert not second.failures(), second.failures()
    batches = sorted(int(p.name) for p in (checkpoint / "speed" / "commits").glob("[0-9]*"))
    totals = [sum(sum(parts.values()) for parts in planned_offsets(checkpoint / "speed", b).values()) for b in batches]
    assert totals[-1] == 12 and len(totals) >= 3
    assert max(np.diff([0, *totals])) <= 5, totals
    conn = hbase_connection(config)
    try:
        rows = SpeedView(conn, config).events(range(1001, 1007))
    finally:
        conn.close()
    assert sorted(len(events) for events in rows.values()) == [2] * 6


def test_no_rating_is_lost_across_a_generation_flip(live, spark):
    import threading

    config, rows, job = live
    known5 = {b for u, b, _ in rows if u == 5}
    fresh = [b for b in range(1, 81) if b not in known5]
    producer = RatingProducer(config)
    producer.send(5, fresh[0], 5)
    producer.send(1000, 3, 4)
    conn = hbase_connection(config)
    speed = SpeedView(conn, config)
    wait_for(lambda: speed.reader(5) and speed.reader(1000), "speed rows of readers 5 and 1000")
    assert _master_rows(spark, config, job, produced=2) == 2

    during = threading.Timer(2.0, lambda: producer.send(5, fresh[1], 2))
    during.start()
    generation = build_generation(spark, config)
    during.join()
    producer.close()
    assert artifacts.current_generation(artifacts.open_store(config)) == generation

    def settled():
        row5 = speed.reader(5)
        return not speed.reader(1000) and (not row5 or row5.generation == generation)

    wait_for(settled, "the watcher to rebase the speed view on the new generation")
    tables = GenerationViews(conn, config, generation)
    history = tables.reader(5).history()
    assert history[fresh[0]] == 5, "the rating streamed before the run is in the new generation"
    if fresh[1] not in history:
        row5 = wait_for(lambda: speed.reader(5), "reader 5's speed row")
        assert [(e[2], e[3]) for e in row5.events] == [(fresh[1], 2)], (
            "the rating posted during the run is in the speed view"
        )
        holder = ModelHolder(artifacts.open_store(config))
        holder.refresh()
        merged = history | {fresh[1]: 2}
        assert np.allclose(row5.vector, holder.model.fold_in(merged), atol=1e-5)
    else:
        assert history[fresh[1]] == 2
    assert tables.reader(1000).history_books.tolist() == [3]
    conn.close()


_BOUNDARY_INTS = [0, 1, -1, 5, 6, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**30]


def _records():
    """Kafka records as anyone could send them: arbitrary bytes and JSON, and events with boundary values."""
    from hypothesis import strategies as st

    numbers = st.sampled_from(_BOUNDARY_INTS) | st.integers() | st.floats(allow_nan=True)
    times = (
        numbers
        | st.sampled_from([EARLIEST_TS_MS - 1, EARLIEST_TS_MS, 2**63, "1900-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
        | st.text(max_size=40)
    )
    json_values = st.recursive(
        st.none() | st.booleans() | numbers | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    events = st.fixed_dictionaries(
        {"user_id": st.integers(1, 3000) | numbers, "book_id": st.integers(1, 95) | numbers, "rating": numbers},
        optional={"ts": times, "event_id": st.text(max_size=70), "extra": json_values},
    )
    values = (
        events.map(lambda e: json.dumps(e, allow_nan=True).encode())
        | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
        | st.binary(max_size=200)
        | st.just(b"[" * 5000)
        | st.none()
    )
    keyed = st.tuples(st.none() | st.binary(max_size=12), values).filter(lambda kv: kv != (None, None))
    return st.lists(keyed, min_size=1, max_size=40)


def _dead_lettered(config) -> set[str]:
    consumer = kafka_consumer(
        config, config.kafka.dead_letter_topic, auto_offset_reset="earliest", consumer_timeout_ms=2_000
    )
    sources = {dict(r.headers)["source"].decode() for r in consumer}
    consumer.close()
    return sources


def test_no_record_stops_the_job_and_every_record_is_accounted_for(live, spark):
    """Whatever a record holds, it lands in the master dataset or in the dead-letter topic, and the job runs on."""
    from hypothesis import HealthCheck, given, settings

    config, _, job = live
    producer = kafka_producer(config)
    issue_record = json.dumps({"user_id": 980009, "book_id": 1, "rating": 4, "ts": 2**63}).encode()

    def send(records: list[tuple[bytes | None, bytes | None]]) -> set[str]:
        futures = [producer.send(config.kafka.ratings_topic, key=k, value=v) for k, v in records]
        return {f"{m.topic}-{m.partition}@{m.offset}" for m in (f.get(timeout=30) for f in futures)}

    def accounted(sent: set[str]) -> None:
        def landed_and_dead() -> bool:
            spark.catalog.refreshTable("ratings")
            stored = spark.table("ratings").where("source = 'stream'").select("origin", "seq").collect()
            landed = {f"{r.origin}@{r.seq}" for r in stored}
            dead = _dead_lettered(config)
            assert not landed & dead, "a record both stored and dead-lettered"
            return sent <= landed | dead

        wait_for(
            lambda: landed_and_dead() or job.failures(), f"{len(sent)} records accounted for", master_timeout(config)
        )
        assert not job.failures(), job.failures()
        assert all(q.isActive for q in job.queries)

    sent = send([(b"980009", issue_record)])
    accounted(sent)
    assert sent <= _dead_lettered(config), "the out-of-range timestamp is dead-lettered"

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_records())
    def any_records(records):
        accounted(send(records))

    any_records()
    producer.close()


def test_the_batch_service_learns_streamed_books_and_absorbs_their_speed_rows(live, spark):
    import threading

    from batch_layer.service import BatchService, batch_lock

    config, rows, job = live
    config = dataclasses.replace(
        config, batch=dataclasses.replace(config.batch, min_new_ratings=4, check_s=1, interval_s=3600, min_age_s=0)
    )
    service = BatchService(spark, config)
    assert service.due() is None, "nothing new: no run"
    store = artifacts.open_store(config)
    before = artifacts.current_generation(store)
    new_book = 81  # in the catalog, rated by nobody: no factors yet
    assert new_book not in _model(config).row_of
    producer = RatingProducer(config)
    for user in (1, 6, 11, 16):  # readers of one genre (user % 5), as book 81 is
        producer.send(user, new_book, 5)
    producer.close()
    conn = hbase_connection(config)
    speed = SpeedView(conn, config)
    wait_for(lambda: len(speed.events([1, 6, 11, 16])) == 4, "speed rows of the four readers")
    wait_for(service.due, "the four ratings in the master dataset")
    young = dataclasses.replace(config, batch=dataclasses.replace(config.batch, min_age_s=3600))
    assert BatchService(spark, young).due() is None, "the generation is younger than min_age_s"
    age = artifacts.age_s(artifacts.load_manifest(store, before))
    old_enough = dataclasses.replace(config, batch=dataclasses.replace(config.batch, min_age_s=age / 2))
    resting = BatchService(spark, old_enough)
    assert resting.due() is not None, "the generation is older than min_age_s"
    resting.ended = time.monotonic()
    assert resting.due() is None, "this service's last run ended less than min_age_s ago"

    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: artifacts.current_generation(store) != before, "the service's automatic generation", timeout=300
        )
    finally:
        stop.set()
        thread.join(timeout=300)
    model = _model(config)
    assert model.generation == artifacts.current_generation(store)
    assert new_book in model.row_of, "the streamed book has factors now"
    books = list(GenerationViews(conn, config, model.generation).books(with_factors=False))
    assert any(new_book in [b for b, _ in book.similar] for book in books), (
        "and is recommendable: it is among other books' similar books"
    )
    wait_for(lambda: not speed.events([1, 6, 11, 16]), "the new generation to absorb the rows")
    assert service.due() is None, "the ratings are in the generation: nothing is due"
    producer = RatingProducer(config)
    for _ in range(config.batch.min_new_ratings):
        producer.send_raw(b"1", b'{"user_id": 1}')
    producer.close()
    assert service.due() is None, "as many records as a run needs are on the topic, but dead letters are no ratings"
    with batch_lock(config), pytest.raises(Exception, match="another batch run"), batch_lock(config):
        pass
    conn.close()


def _model(config):
    holder = ModelHolder(artifacts.open_store(config))
    holder.refresh()
    return holder.model
