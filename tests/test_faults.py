"""Servers of the stack restarted under load (issue 14): nothing acknowledged is lost, nothing doubles, no 5xx.

Each test stops one server the stack started (by its pid file) and starts it again with
`Stack.start`, which waits until it answers; they run after the other stack tests.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest

from deploy.init import init
from deploy.stack import Stack
from readnext import artifacts
from readnext.accounts import Tokens
from readnext.clients import hbase_connection, kafka_consumer
from readnext.config import PROJECT_ROOT
from readnext.events import RatingProducer
from readnext.model import ModelHolder
from readnext.views import GenerationViews, SpeedView
from serving_layer.app import create_app
from speed_layer.produce import produce
from tests.readers import Poster, Readers
from tests.test_stream import _master_rows
from tests.waiting import committed_events, wait_for

pytestmark = pytest.mark.stack_lifecycle


def _restart(stack: Stack, name: str, down_s: float) -> None:
    """Stop one server of the stack, keep it down `down_s` seconds, start it again and wait until it answers."""
    stack.stop(names=[name], echo=lambda _: None)
    time.sleep(down_s)
    stack.start(echo=lambda _: None)


def test_kafka_restart_while_ratings_are_posted(stack, live, spark):
    """Every 202 is in the master dataset once and in the reader's speed row; the outage answers 503 in time."""
    config, rows, job = live
    config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, enabled=False))
    init(config)  # the accounts' and tokens' tables
    conn = hbase_connection(config)
    headers = {"Authorization": f"Bearer {Tokens(conn, config).issue_key('faults', {'ratings:write'})}"}
    app = create_app(config)
    known = {(u, b) for u, b, _ in rows}
    pairs = [(u, b) for u in range(1, 61) for b in range(1, 81) if (u, b) not in known]
    np.random.default_rng(3).shuffle(pairs)
    with Poster(app, headers, pairs, rate=10) as poster:
        wait_for(lambda: poster.statuses()[202] >= 30, "30 ratings accepted before the restart")
        _restart(stack, "kafka", down_s=10)
        after = poster.statuses()[202]
        wait_for(lambda: poster.statuses()[202] >= after + 30, "30 ratings accepted after the restart", 120)
    statuses = poster.statuses()
    assert set(statuses) <= {202, 503}, statuses
    assert statuses[503] >= 1, "the outage was seen by the API"
    bound = config.kafka.send_timeout_s + 1
    slow = [took for _, status, took in poster.answers if status == 503 and took > bound]
    assert not slow, f"503s must come within {bound} s: {slow}"

    accepted = poster.accepted()
    refused = {rating for rating, status, _ in poster.answers if status == 503}
    speed = SpeedView(conn, config)
    by_user: dict[int, set[tuple[int, int]]] = {}
    for user, book, rating in accepted:
        by_user.setdefault(user, set()).add((book, rating))

    def in_speed_view() -> bool:
        events = speed.events(by_user)
        return all(wanted <= {(b, r) for _, _, b, r, _ in events.get(u, [])} for u, wanted in by_user.items())

    wait_for(in_speed_view, "every accepted rating in its reader's speed row", 180)
    for user, events in speed.events(by_user).items():
        origins = [(origin, offset) for origin, offset, *_ in events]
        assert len(origins) == len(set(origins)), f"reader {user}: an event applied twice"
    conn.close()

    stored_count = _master_rows(spark, config, job, produced=len(accepted))
    stored = Counter(
        (r.user_id, r.book_id, r.rating) for r in spark.table("ratings").where("source = 'stream'").collect()
    )
    assert stored_count == sum(stored.values())
    assert all(stored[rating] == 1 for rating in accepted), "every accepted rating stored exactly once"
    assert set(stored) <= set(accepted) | refused, "nothing stored that was not posted"
    assert all(n == 1 for n in stored.values()), "no rating doubled"


def test_a_replay_goes_on_across_a_kafka_restart(stack, live):
    """`python -m speed_layer produce` retries through a broker restart: it ends, and every line is on the topic."""
    config, _, _ = live
    lines = [f"{2000 + i},{1 + i % 80},{1 + i % 5}" for i in range(40)]
    ended: dict[str, tuple[int, int]] = {}

    def replay() -> None:
        ended["with"] = produce(config, io.StringIO("\n".join(lines)), rate=4)

    thread = threading.Thread(target=replay)
    thread.start()
    time.sleep(3)
    _restart(stack, "kafka", down_s=10)
    thread.join(timeout=180)
    assert ended.get("with") == (40, 0), "every line sent, none refused"
    consumer = kafka_consumer(
        config, config.kafka.ratings_topic, auto_offset_reset="earliest", consumer_timeout_ms=5_000
    )
    on_topic = {(e["user_id"], e["book_id"], e["rating"]) for e in (json.loads(r.value) for r in consumer)}
    consumer.close()
    assert {tuple(int(x) for x in line.split(",")) for line in lines} <= on_topic


def test_hbase_and_thrift_restart_under_serving_load(stack, live):
    """Readers get popular books with a notice while HBase is away, personal ones after; no 5xx; speed rows exact."""
    config, rows, job = live
    init(config)
    conn = hbase_connection(config)
    reader = {"Authorization": f"Bearer {Tokens(conn, config).issue_reader(7)}"}
    conn.close()
    known = {(u, b) for u, b, _ in rows}
    rng = np.random.default_rng(11)
    sent = [(u, b, int(rng.integers(1, 6))) for u in range(1, 21) for b in range(1, 81) if (u, b) not in known][::9]
    before, during = sent[: len(sent) // 2], sent[len(sent) // 2 :]
    producer = RatingProducer(config)
    with Readers(create_app(config), reader, threads=2) as readers:
        for user, book, rating in before:
            producer.send(user, book, rating)
        stack.stop(names=["hbase", "thrift"], echo=lambda _: None)
        for user, book, rating in during:  # the speed job's writes meet HBase away
            producer.send(user, book, rating)
        readers.until(lambda answer: answer[2] == "popular")
        stack.start(echo=lambda _: None)
        back = time.monotonic()
        readers.until(lambda answer: answer[2] != "popular", timeout=120)
    producer.close()
    assert readers.failures == [], "every answer during the restart is a 200"
    personal_again = next(t for t, source in readers.sources if t > back and source != "popular")
    assert personal_again - back < config.hbase.timeout_ms / 1000, "personal answers within HBase's timeout"

    conn = hbase_connection(config)
    speed = SpeedView(conn, config)
    per_user = Counter(u for u, _, _ in sent)
    wait_for(
        lambda: {u: len(events) for u, events in speed.events(per_user).items()} == dict(per_user),
        "every rating sent in its reader's speed row",
        180,
    )
    holder = ModelHolder(artifacts.open_store(config))
    holder.refresh()
    views = GenerationViews(conn, config, holder.model.generation)
    for user in per_user:
        batch = views.reader(user)
        history = batch.history() if batch else {}
        history.update({b: r for u, b, r in sent if u == user})
        assert np.allclose(speed.reader(user).vector, holder.model.fold_in(history), atol=1e-5), f"reader {user}"
    conn.close()


def test_metastore_away_while_the_master_query_runs(stack, live, spark, tmp_path):
    """Events sent while Derby is down reach the master dataset once it is back, exactly once; a batch run refuses."""
    config, rows, job = live
    known = {(u, b) for u, b, _ in rows}
    rng = np.random.default_rng(13)
    sent = [(u, b, int(rng.integers(1, 6))) for u in range(1, 31) for b in range(1, 81) if (u, b) not in known][::11]
    before, during = sent[: len(sent) // 3], sent[len(sent) // 3 :]
    producer = RatingProducer(config)
    for rating in before:
        producer.send(*rating)
    assert _master_rows(spark, config, job, produced=len(before)) == len(before)
    stack.stop(names=["metastore"], echo=lambda _: None)
    try:
        for rating in during:
            producer.send(*rating)
        refused = subprocess.run(
            [sys.executable, "-m", "batch_layer", "run", "--data", str(tmp_path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        time.sleep(3 * config.speed.master_trigger_s)  # master micro-batches meet the metastore away
        held = committed_events(config.speed.checkpoint_dir / "master")
    finally:
        stack.start(echo=lambda _: None)
    producer.close()
    assert held == len(before), "no micro-batch is committed while its events cannot be stored"
    assert refused.returncode == 1
    assert "the Hive metastore at 127.0.0.1:" in refused.stderr and "does not answer" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) < 5, refused.stderr[-2000:]

    assert _master_rows(spark, config, job, produced=len(sent)) == len(sent)
    stored = Counter(
        (r.user_id, r.book_id, r.rating) for r in spark.table("ratings").where("source = 'stream'").collect()
    )
    assert stored == Counter(sent), "every event stored exactly once"
