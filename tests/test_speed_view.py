"""The speed view in real HBase: exact fold-in of batch history plus stream events, idempotent, rebased on a flip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.hbase_schema import (
    FAMILIES,
    generation_table,
    pack_ids,
    pack_ratings,
    row_key,
    speed_table,
    unpack_floats,
    unpack_ids,
)
from readnext.model import ModelHolder
from speed_layer.view import StreamEvent, ensure_speed_table, rebase, update_readers


@pytest.fixture
def env(stack, config, tmp_path, unique_name):
    """A generation 'G1' with 30 books and two readers' histories, in HBase and a local artifact store."""
    config = dataclasses.replace(config, hbase=dataclasses.replace(config.hbase, table_prefix=unique_name))
    store = artifacts.LocalStore(tmp_path)
    conn = hbase_connection(config)
    ensure_speed_table(conn, config)
    rng = np.random.default_rng(4)
    factors = rng.normal(size=(30, 5)).astype(np.float32)
    model_cfg = dataclasses.asdict(dataclasses.replace(config.model, rating_offset=0.0))

    def publish(generation: str, offsets: dict[str, int], histories: dict[int, dict[int, int]]) -> None:
        name = generation_table(config, generation, "users")
        conn.create_table(name, FAMILIES["users"])
        for user, ratings in histories.items():
            conn.table(name).put(
                row_key(user),
                {b"h:books": pack_ids(list(ratings)), b"h:ratings": pack_ratings(list(ratings.values()))},
            )
        manifest = {"model": model_cfg, "stream_offsets": offsets}
        artifacts.publish_generation(store, generation, np.arange(1, 31), factors, manifest)
        artifacts.set_current(store, generation)

    publish("G1", {"ratings-0": 99}, {1: {1: 5, 2: 4, 3: 1}, 2: {4: 5}})
    holder = ModelHolder(store)
    holder.refresh()
    yield config, conn, holder, publish
    for name in conn.tables():
        if name.decode().startswith(unique_name + "_"):
            conn.delete_table(name, disable=True)
    conn.close()


def _row(conn, config, user):
    return conn.table(speed_table(config)).row(row_key(user))


def test_events_fold_in_exactly_and_replays_change_nothing(env):
    config, conn, holder, _ = env
    model = holder.model
    events = {
        1: [StreamEvent("ratings-0", 100, 1, 7, 5, 1_000), StreamEvent("ratings-0", 101, 1, 3, 5, 2_000)],
        9: [StreamEvent("ratings-1", 5, 9, 8, 4, 1_500)],
    }
    assert update_readers(conn, config, model, events, n=5) == 2
    row = _row(conn, config, 1)
    expected_history = {1: 5, 2: 4, 3: 5, 7: 5}  # the stream re-rating of book 3 replaces the batch's 1
    assert np.allclose(unpack_floats(row[b"v:vector"]), model.fold_in(expected_history), atol=1e-6)
    recs = unpack_ids(row[b"v:books"]).tolist()
    assert len(recs) == 5 and not set(recs) & set(expected_history)
    assert row[b"v:generation"] == b"G1" and row[b"v:last_ts"] == b"2000"
    new_reader = _row(conn, config, 9)
    assert np.allclose(unpack_floats(new_reader[b"v:vector"]), model.fold_in({8: 4}), atol=1e-6)

    update_readers(conn, config, model, {1: events[1]}, n=5)
    assert json.loads(_row(conn, config, 1)[b"v:events"]) == json.loads(row[b"v:events"])
    assert np.array_equal(_row(conn, config, 1)[b"v:vector"], row[b"v:vector"])


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
    kept, dropped = rebase(conn, config, holder.model, n=5)
    assert (kept, dropped) == (1, 1)
    assert _row(conn, config, 2) == {}
    row = _row(conn, config, 1)
    assert row[b"v:generation"] == b"G2"
    assert [e[1] for e in json.loads(row[b"v:events"])] == [105]
    assert np.allclose(unpack_floats(row[b"v:vector"]), holder.model.fold_in({1: 5, 2: 4, 3: 1, 7: 5, 9: 2}), atol=1e-6)
