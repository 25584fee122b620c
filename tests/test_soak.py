"""The soak in small (issue 14; the 30-minute one is bench/soak.py): every layer at once for a few minutes.

Ratings posted through the API at a steady rate, a reader served all along, the streaming job
folding them in and the batch service recomputing generations as they arrive: no error, every
acknowledged rating in the master dataset once, and no leak: neither the live heap of Spark's JVM
(where the batch runs) nor this Python process's memory keeps rising once the first generations
are done.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter

import numpy as np
import pytest

from batch_layer.service import BatchService
from deploy.init import init
from readnext import artifacts
from readnext.accounts import Tokens
from readnext.clients import hbase_connection
from readnext.processes import rss_mb
from serving_layer.app import create_app
from tests.readers import Poster, Readers
from tests.test_stream import _master_rows

SOAK_S = float(os.environ.get("READNEXT_TEST_SOAK_S", "180"))
# What a leak would raise: the least memory held over the last third of the run against the
# least over the middle third. The least, because a batch run in progress holds its working set
# for a while; a resident size, because a JVM's grows to its -Xmx whether or not anything leaks
# (it rose by 743 MB in a CI run that leaked nothing). Figures: docs/reliability.md.
LEAK_BOUND_MB = 100

pytestmark = pytest.mark.stack_lifecycle


def _memory_mb(spark) -> tuple[float, float]:
    """Spark's JVM heap still in use after a full collection, and this process's resident memory."""
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
    bean.gc()
    return bean.getHeapMemoryUsage().getUsed() / 2**20, rss_mb(os.getpid())


def _floor_growth(memory: list[tuple[float, tuple[float, float]]], which: int) -> float:
    middle = [mb[which] for t, mb in memory if SOAK_S / 3 <= t < 2 * SOAK_S / 3]
    last = [mb[which] for t, mb in memory if t >= 2 * SOAK_S / 3]
    return min(last) - min(middle)


def test_every_layer_at_once_for_three_minutes(stack, live, spark):
    config, rows, job = live
    config = dataclasses.replace(
        config,
        batch=dataclasses.replace(config.batch, min_new_ratings=300, check_s=10, min_age_s=0),
        limits=dataclasses.replace(config.limits, enabled=False),
    )
    init(config)
    conn = hbase_connection(config)
    tokens = Tokens(conn, config)
    service_headers = {"Authorization": f"Bearer {tokens.issue_key('soak', {'ratings:write'})}"}
    reader_headers = {"Authorization": f"Bearer {tokens.issue_reader(7)}"}
    conn.close()
    store = artifacts.open_store(config)
    first = artifacts.current_generation(store)
    pairs = [(u, b) for u in range(1000, 1400) for b in range(1, 81)]
    np.random.default_rng(17).shuffle(pairs)
    app = create_app(config)
    service, stop = BatchService(spark, config), threading.Event()
    batch = threading.Thread(target=service.run, args=(stop,), daemon=True)
    memory: list[tuple[float, tuple[float, float]]] = []
    started = time.monotonic()
    batch.start()
    try:
        with (
            Readers(app, reader_headers, threads=1, pause=0.05) as readers,
            Poster(app, service_headers, pairs, rate=20) as poster,
        ):
            while time.monotonic() - started < SOAK_S:
                memory.append((time.monotonic() - started, _memory_mb(spark)))
                time.sleep(5)
    finally:
        stop.set()
        batch.join(timeout=600)
    assert not batch.is_alive(), "the batch service stops when asked"
    statuses = poster.statuses()
    assert set(statuses) == {202} and statuses[202] > SOAK_S * 10, statuses
    assert readers.failures == [], "every reader's answer is a 200"
    generations = artifacts.list_generations(store)
    assert artifacts.current_generation(store) != first and len(generations) >= 2, "the service recomputed"

    accepted = poster.accepted()
    assert _master_rows(spark, config, job, produced=len(accepted)) == len(accepted)
    stored = Counter(
        (r.user_id, r.book_id, r.rating) for r in spark.table("ratings").where("source = 'stream'").collect()
    )
    assert stored == Counter(accepted), "every acknowledged rating stored exactly once"

    print("memory (s, (JVM live heap MB, Python RSS MB)):", [(round(t), tuple(map(round, mb))) for t, mb in memory])
    assert _floor_growth(memory, 0) < LEAK_BOUND_MB, f"JVM live heap (s, MB): {memory}"
    assert _floor_growth(memory, 1) < LEAK_BOUND_MB, f"Python resident memory (s, MB): {memory}"
