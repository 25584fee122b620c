"""SIGKILL a batch run at each stage: the previous generation keeps serving, the next run removes what was left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from readnext import artifacts
from readnext.clients import hbase_connection
from readnext.config import PROJECT_ROOT, load_config, sandbox_env
from readnext.views import GenerationRecords
from tests.conftest import drop_sandbox
from tests.data import taste_ratings, write_books, write_ratings

# Stages a run is killed at, by the log line that starts them: before anything is written
# (training), after the Hive views (HBase view writes), and with everything but the flip done.
KILL_AT = ("train ALS", "write HBase views", "make generation current")

LEFT_IN_HIVE = """
import json
from readnext.config import load_config
from readnext.spark import get_spark, stop_spark
from readnext.views import HIVE_VIEWS
spark = get_spark(load_config(), app_name="left-in-hive")
found = []
for table in HIVE_VIEWS:
    found += [r[0].split("=", 1)[1] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]
found += [r.generation for r in spark.table("generations").collect()]
print("FOUND=" + json.dumps(sorted(set(found))))
stop_spark(spark)
"""


def _batch(env: dict[str, str], *args: str, kill_at: str | None = None) -> str | None:
    """Run `python -m batch_layer ARGS`; with `kill_at`, SIGKILL it when that stage starts. Returns the generation."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_layer", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_at and f"stage {kill_at}: start" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=600)
    if kill_at:
        assert proc.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
        return None
    assert proc.returncode == 0, "".join(lines)[-3000:]
    return next(line.split()[1] for line in lines if line.startswith("generation ") and "is current" in line)


def test_killed_batch_runs_leave_the_previous_generation_serving_and_the_next_run_cleans_up(
    stack, tmp_path, unique_name
):
    env = dict(os.environ, **sandbox_env(tmp_path, unique_name))
    env.update({"READNEXT_MODEL_RANK": "8", "READNEXT_MODEL_ITERATIONS": "4", "READNEXT_SPARK_DRIVER_MEMORY": "1g"})
    config = load_config(env=env)
    data = tmp_path / "data"
    data.mkdir()
    write_ratings(data / "ratings.csv", taste_ratings(seed=5, users=60, books=50, per_user=12))
    write_books(data / "books.csv", books=50)
    store = artifacts.open_store(config)
    try:
        first = _batch(env, "run", "--data", str(data))
        killed = []
        for stage in KILL_AT:
            _batch(env, "train", kill_at=stage)
            assert artifacts.current_generation(store) == first, f"killed at {stage}: the previous one still serves"
            left = [g for g in artifacts.list_generations(store) if g != first]
            assert len(left) == 1 and left[0] not in killed, f"killed at {stage}: only this run's generation is left"
            killed.append(left[0])

        second = _batch(env, "train")
        assert artifacts.current_generation(store) == second
        left = list((tmp_path / "spark-checkpoints").glob("app-*"))
        assert left == [], "each run removes its RDD checkpoints, and a killed run's are removed by the next"
        assert sorted(artifacts.list_generations(store)) == [first, second]
        conn = hbase_connection(config)
        try:
            tables = [t.decode() for t in conn.tables()]
            assert not [t for t in tables if any(g in t for g in killed)], "no HBase table of a killed run"
            assert not set(killed) & set(GenerationRecords(conn, config).generations())
        finally:
            conn.close()
        hive = subprocess.run(
            [sys.executable, "-c", LEFT_IN_HIVE], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert hive.returncode == 0, hive.stderr[-3000:]
        found = json.loads(next(line for line in hive.stdout.splitlines() if line.startswith("FOUND="))[6:])
        assert not set(killed) & set(found) and {first, second} <= set(found), found
    finally:
        drop_sandbox(config)
