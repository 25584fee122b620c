"""The speed view in real HBase: exact fold-in of batch history plus stream events, idempotent, rebased on a flip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.model import ModelHolder
from readnext.views import BatchRow, GenerationViews, SpeedView, put_rows
from tests.conftest import drop_sandbox


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
