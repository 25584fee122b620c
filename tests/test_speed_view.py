"""The speed view in real HBase: exact fold-in of batch history plus stream events, idempotent, rebased on a flip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.events import RatingEvent, StreamEvent, now_ms
from readnext.model import ModelHolder
from readnext.views import BatchRow, BookRow, GenerationViews, SpeedView, put_rows
from speed_layer.kafka_read import Record
from speed_layer.stream import KnownBooks, SpeedUpdates
from speed_layer.view import rebase, update_readers
from tests.conftest import drop_sandbox
from tests.proxy import TcpProxy


@pytest.fixture
def env(stack, config, tmp_path, unique_name):
    """A generation 'G1' with 30 books and two readers' histories, in HBase and a local artifact store."""
    config = dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, table_prefix=unique_name))
    store = artifacts.LocalStore(tmp_path)
    conn = hbase_connection(config)
    SpeedView(conn, config).ensure()
    rng = np.random.default_rng(4)
    factors = rng.normal(size=(30, 5)).astype(np.float32)
    model_cfg = dataclasses.asdict(dataclasses.replace(config.model, rating_offset=0.0))

    def publish(generation: str, offsets: dict[str, int], histories: dict[int, dict[int, int]]) -> None:
        tables = GenerationViews(conn, config, generation)
        tables.create()
        empty = np.zeros(0)
        put_rows(
            conn,
            tables.users_table,
            [(u, BatchRow(empty, list(r), list(r.values()), [], empty)) for u, r in histories.items()],
        )
        manifest = {"model": model_cfg, "stream_offsets": offsets}
        artifacts.publish_generation(store, generation, np.arange(1, 31), factors, manifest)
        artifacts.set_current(store, generation)

    publish("G1", {"ratings-0": 99}, {1: {1: 5, 2: 4, 3: 1}, 2: {4: 5}})
    holder = ModelHolder(store)
    holder.refresh()
    yield config, conn, holder, publish
    conn.close()
    drop_sandbox(config)


def test_events_fold_in_exactly_with_reasons_and_replays_change_nothing(env):
    config, conn, holder, _ = env
    model = holder.model
    events = {
        1: [StreamEvent("ratings-0", 100, 1, 7, 5, 1_000), StreamEvent("ratings-0", 101, 1, 3, 5, 2_000)],
        9: [StreamEvent("ratings-1", 5, 9, 8, 4, 1_500)],
    }
    assert update_readers(conn, config, model, events, n=5) == 2
    speed = SpeedView(conn, config)
    row = speed.reader(1)
    expected_history = {1: 5, 2: 4, 3: 5, 7: 5}  # the stream re-rating of book 3 replaces the batch's 1
    assert np.allclose(row.vector, model.fold_in(expected_history), atol=1e-6)
    recs = row.books.tolist()
    assert len(recs) == 5 and not set(recs) & set(expected_history)
    assert row.generation == "G1" and row.last_ts == 2000
    assert row.reason_of() == dict(zip(recs, model.reasons(expected_history, recs), strict=True))
    assert set(row.reason_of().values()) & set(expected_history), "a reason names a rated book"
    assert np.allclose(speed.reader(9).vector, model.fold_in({8: 4}), atol=1e-6)

    update_readers(conn, config, model, {1: events[1]}, n=5)
    again = speed.reader(1)
    assert again.events == row.events
    assert np.array_equal(again.vector, row.vector) and again.reason_of() == row.reason_of()


def test_generation_flip_drops_absorbed_events_and_keeps_later_ones(env):
    config, conn, holder, publish = env
    update_readers(
        conn,
        config,
        holder.model,
        {
            1: [StreamEvent("ratings-0", 100, 1, 7, 5, 1_000), StreamEvent("ratings-0", 105, 1, 9, 2, 3_000)],
            2: [StreamEvent("ratings-0", 101, 2, 8, 4, 1_100)],
        },
        n=5,
    )
    # G2 learnt from offsets up to 102: reader 2's event and reader 1's first are in its history now.
    publish("G2", {"ratings-0": 102}, {1: {1: 5, 2: 4, 3: 1, 7: 5}, 2: {4: 5, 8: 4}})
    assert holder.refresh()
    assert rebase(conn, config, holder.model, n=5) == (1, 1)
    speed = SpeedView(conn, config)
    assert speed.reader(2) is None
    row = speed.reader(1)
    assert row.generation == "G2"
    assert [e[1] for e in row.events] == [105]
    assert np.allclose(row.vector, holder.model.fold_in({1: 5, 2: 4, 3: 1, 7: 5, 9: 2}), atol=1e-6)


def test_rebase_of_some_readers_leaves_the_others_and_rows_already_on_the_generation(env):
    """The speed job rebases in chunks between micro-batches: a chunk redoes only its own stale rows."""
    config, conn, holder, publish = env
    g1 = holder.model
    update_readers(
        conn,
        config,
        g1,
        {u: [StreamEvent("ratings-0", 200 + u, u, 7, 5, 1_000)] for u in (1, 2, 3)},
        n=5,
    )
    publish("G2", {"ratings-0": 150}, {1: {1: 5}, 2: {4: 5}, 3: {2: 3}})
    assert holder.refresh()
    g2 = holder.model
    # A micro-batch between two chunks puts reader 3 on G2 with a newer event.
    update_readers(conn, config, g2, {3: [StreamEvent("ratings-0", 300, 3, 9, 4, 2_000)]}, n=5)
    speed = SpeedView(conn, config)
    newer = speed.reader(3)
    assert rebase(conn, config, g2, n=5, users=[1, 3]) == (1, 0), "reader 3 is on G2 already"
    assert speed.reader(1).generation == "G2" and speed.reader(2).generation == "G1"
    assert speed.reader(3).events == newer.events and speed.reader(3).updated_ms == newer.updated_ms
    assert rebase(conn, config, g2, n=5) == (1, 0) and speed.reader(2).generation == "G2"


def test_a_rebase_that_fails_is_due_again_at_the_next_check(env):
    """HBase away during a flip: the job keeps the new generation and rebases once HBase is back."""
    config, conn, holder, publish = env
    update_readers(conn, config, holder.model, {1: [StreamEvent("ratings-0", 200, 1, 7, 5, 1_000)]}, n=5)
    proxy = TcpProxy(config.hbase.port, config.hbase.host)
    away = dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, port=proxy.port))
    updates = SpeedUpdates(away, holder, KnownBooks(away), away.speed.checkpoint_dir / "speed")
    publish("G2", {"ratings-0": 150}, {1: {1: 5}})
    proxy.cut()
    with pytest.raises(Exception):  # noqa: B017 - whatever the Thrift client raises for a refused connection
        updates.follow_generation()
    assert holder.model.generation == "G2" and updates.rebased is None
    assert SpeedView(conn, config).reader(1).generation == "G1"
    updates.config = config  # HBase is back
    updates.follow_generation()
    assert updates.rebased == "G2" and SpeedView(conn, config).reader(1).generation == "G2"


def test_a_generation_swapped_in_by_another_thread_is_rebased_all_the_same(env):
    """The speed view is rebased on each generation once, whoever loaded it into the holder first."""
    config, conn, holder, publish = env
    update_readers(conn, config, holder.model, {1: [StreamEvent("ratings-0", 200, 1, 7, 5, 1_000)]}, n=5)
    updates = SpeedUpdates(config, holder, KnownBooks(config), config.speed.checkpoint_dir / "speed")
    updates.follow_generation()
    assert updates.rebased == "G1"
    publish("G2", {"ratings-0": 150}, {1: {1: 5}})
    assert holder.refresh()  # not through the speed view: its own swap finds nothing newer
    updates.follow_generation()
    row = SpeedView(conn, config).reader(1)
    assert updates.rebased == "G2" and row.generation == "G2"
    assert np.allclose(row.vector, holder.model.fold_in({1: 5, 7: 5}), atol=1e-6)


def test_events_read_before_the_watcher_loaded_the_first_generation_are_folded_in(env, tmp_path):
    """A micro-batch right after the first generation is published loads it itself rather than skip its events."""
    config, conn, _, _ = env
    put_rows(
        conn, GenerationViews(conn, config, "G1").books_table, [(b, BookRow(b, f"t{b}", "a")) for b in range(1, 31)]
    )
    holder = ModelHolder(artifacts.LocalStore(tmp_path))  # the job's own holder: G1 is current, not loaded yet
    updates = SpeedUpdates(config, holder, KnownBooks(config), config.speed.checkpoint_dir / "speed")
    value = RatingEvent(5, 7, 4, now_ms()).to_json()
    assert updates.fold_in([Record(b"5", value, "ratings", 0, 120, now_ms())]) == 1
    row = SpeedView(conn, config).reader(5)
    assert row.generation == "G1" and row.events[0][1] == 120
    assert np.allclose(row.vector, holder.model.fold_in({7: 4}), atol=1e-6)
