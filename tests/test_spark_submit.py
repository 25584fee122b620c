"""The batch entry point runs through spark-submit on a real Spark standalone master and worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from readnext import artifacts
from readnext.config import PROJECT_ROOT, load_config, sandbox_env
from tests.conftest import drop_sandbox
from tests.data import taste_ratings, write_books, write_ratings

MASTER_PORT = 17077


def _spark_class() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return str(Path(_find_spark_home()) / "bin" / "spark-class")


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"nothing listens on {port}; see {log}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and one worker on 127.0.0.1, from pyspark's own distribution."""
    folder = tmp_path_factory.mktemp("standalone")
    env = dict(
        os.environ, SPARK_WORKER_DIR=str(folder / "work"), SPARK_LOG_DIR=str(folder), PYSPARK_PYTHON=sys.executable
    )
    procs = []
    master_log = folder / "master.log"
    procs.append(
        subprocess.Popen(
            [
                _spark_class(),
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(MASTER_PORT),
                "--webui-port",
                "18090",
            ],
            stdout=master_log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
    )
    _wait_port(MASTER_PORT, procs[0], master_log)
    worker_log = folder / "worker.log"
    procs.append(
        subprocess.Popen(
            [
                _spark_class(),
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                "18091",
                f"spark://127.0.0.1:{MASTER_PORT}",
            ],
            stdout=worker_log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
    )
    deadline = time.monotonic() + 90
    while "Successfully registered with master" not in worker_log.read_text():
        assert procs[1].poll() is None, worker_log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"worker did not register; see {worker_log}"
        time.sleep(0.5)
    yield f"spark://127.0.0.1:{MASTER_PORT}", folder / "work"
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(timeout=30)


def test_batch_run_through_spark_submit(stack, standalone_cluster, tmp_path, unique_name):
    master_url, work_dir = standalone_cluster
    data = tmp_path / "data"
    data.mkdir()
    write_ratings(data / "ratings.csv", taste_ratings(seed=3, users=120, books=150, per_user=20))
    write_books(data / "books.csv")
    env = dict(os.environ, **sandbox_env(tmp_path, unique_name))
    env.update(
        {
            "READNEXT_SPARK_DRIVER_MEMORY": "1g",
            "READNEXT_MODEL_RANK": "8",
            "READNEXT_MODEL_ITERATIONS": "5",
            "READNEXT_BATCH_EVALUATE": "false",
        }
    )
    try:
        _submit_and_check(env, master_url, work_dir, data)
    finally:
        drop_sandbox(load_config(env=env))


def _submit_and_check(env: dict[str, str], master_url: str, work_dir: Path, data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.submit", "--master", master_url, "batch_layer", "run", "--data", str(data)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    generation = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("generation "))
    store = artifacts.open_store(load_config(env=env))
    assert artifacts.current_generation(store) == generation
    ids, factors, manifest = artifacts.load_generation(store, generation)
    assert factors.shape == (150, 8) and manifest["counts"]["users"] == 120
    apps = list(work_dir.glob("app-*"))
    assert apps, "the job ran no executor on the standalone worker"
    assert any((app / "0" / "stderr").exists() for app in apps)
