"""Kill the streaming job with SIGKILL mid-stream and restart it: no rating lost, none applied twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np

from deploy.init import init
from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.config import PROJECT_ROOT, load_config, sandbox_env
from readnext.events import RatingProducer
from readnext.model import ModelHolder
from readnext.views import GenerationViews, SpeedView
from tests.conftest import drop_sandbox
from tests.data import batch_on_small_data
from tests.waiting import committed_events, wait_for

READ_MASTER = """
import json
from readnext.config import load_config
from readnext.spark import get_spark, stop_spark
spark = get_spark(load_config(), app_name="read-master")
stream = spark.table("ratings").where("source = 'stream'")
rows = stream.select("origin", "seq", "user_id", "book_id", "rating").collect()
print("ROWS=" + json.dumps([list(r) for r in rows]))
stop_spark(spark)
"""


def _start_stream(env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "speed_layer", "stream"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(proc, sig):
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def test_sigkill_and_restart_lose_nothing_and_apply_nothing_twice(stack, tmp_path, unique_name):
    env = dict(os.environ, **sandbox_env(tmp_path, unique_name))
    env.update(
        {
            "READNEXT_SPEED_MASTER_TRIGGER_S": "1",
            "READNEXT_SPARK_DRIVER_MEMORY": "1g",
            "READNEXT_MODEL_RANK": "8",
            "READNEXT_MODEL_ITERATIONS": "5",
            "READNEXT_BATCH_EVALUATE": "false",
        }
    )
    config = load_config(env=env)
    batch_on_small_data(tmp_path, env, "run", seed=8, users=50)
    log = (tmp_path / "stream.log").open("ab")
    rng = np.random.default_rng(2)
    sent = [(int(rng.integers(1, 60)), int(rng.integers(1, 61)), int(rng.integers(1, 6))) for _ in range(240)]
    init(config)  # the set-up step of deploy/stack start: topics and the speed view's table
    producer = RatingProducer(config)
    stream = None
    try:
        stream = _start_stream(env, log)
        for i, (user, book, rating) in enumerate(sent):
            producer.send(user, book, rating)
            if i == 120:  # let the job take part of the stream, then crash it mid-way
                wait_for(
                    lambda: b"speed batch" in (tmp_path / "stream.log").read_bytes(),
                    "the first job's first speed micro-batch",
                    timeout=180,
                )
                _kill(stream, signal.SIGKILL)
                stream = _start_stream(env, log)
            time.sleep(0.02)
        producer.close()
        conn = hbase_connection(config)
        speed = SpeedView(conn, config)
        per_user = Counter(u for u, _, _ in sent)

        def caught_up():
            events = speed.events(per_user)
            return all(len(events.get(u, [])) == n for u, n in per_user.items())

        deadline = time.monotonic() + 180
        while not caught_up():
            assert stream.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the restarted job did not catch up"
            time.sleep(1)
        while committed_events(config.speed.checkpoint_dir / "master") < len(sent):
            assert stream.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the master-dataset query did not catch up"
            time.sleep(1)
        _kill(stream, signal.SIGTERM)
        offsets = list((config.speed.checkpoint_dir / "speed" / "offsets").iterdir())
        assert offsets and not [p for p in offsets if p.name.endswith(".crc")], "checkpoints on the raw file system"

        holder = ModelHolder(artifacts.open_store(config))
        holder.refresh()
        tables = GenerationViews(conn, config, holder.model.generation)
        events_by_user: dict[int, list[tuple[int, int]]] = {}
        for user, book, rating in sent:
            events_by_user.setdefault(user, []).append((book, rating))
        for user, events in events_by_user.items():
            batch = tables.reader(user)
            history = batch.history() if batch else {}
            history.update(dict(events))  # in posting order: the latest rating of a book wins
            stored = speed.reader(user).vector
            assert np.allclose(stored, holder.model.fold_in(history), atol=1e-5), f"reader {user}"
        conn.close()

        read = subprocess.run(
            [sys.executable, "-c", READ_MASTER], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert read.returncode == 0, read.stderr[-3000:]
        rows = json.loads(next(line for line in read.stdout.splitlines() if line.startswith("ROWS="))[5:])
        assert len({(origin, seq) for origin, seq, *_ in rows}) == len(rows), "no event stored twice"
        assert Counter((u, b, r) for _, _, u, b, r in rows) == Counter(sent), "every rating stored exactly once"
    finally:
        log.close()
        if stream is not None and stream.poll() is None:
            _kill(stream, signal.SIGKILL)
        drop_sandbox(config)
