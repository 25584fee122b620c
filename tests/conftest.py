"""Test session set-up: the real local stack and one SparkSession, started once and shared.

Tests keep to their own Spark metastore and warehouse (under a temporary folder), HBase table
prefix and Kafka topic names, so that they never touch what `make demo` wrote.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pyspark.errors import AnalysisException

from batch_layer.generation import build_generation
from batch_layer.ingest import DataFiles, ingest
from deploy.init import init
from deploy.stack import Stack
from readnext.accounts import Tokens
from readnext.clients import hbase_connection, kafka_admin
from readnext.config import PROJECT_ROOT, Config, load_config, sandbox_env
from readnext.events import RatingProducer, StreamEvent
from readnext.processes import pid_alive
from readnext.views import SpeedView
from serving_layer.app import create_app
from speed_layer import stream
from speed_layer.view import update_readers
from tests.data import taste_ratings, write_books, write_ratings
from tests.waiting import wait_for

_TEST_STATE = Path(tempfile.mkdtemp(prefix="readnext-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    """Point every setting that names a place (metastore, warehouse, HBase prefix, topics) at a sandbox."""
    for key, value in sandbox_env(_TEST_STATE, "readnext_test").items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("READNEXT_SPARK_SHUFFLE_PARTITIONS", "2")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's metastore and warehouse go with it (each session used to leave 4-8 MB in /tmp)."""
    shutil.rmtree(_TEST_STATE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the stack (`pytest -m "not stack"`: the pure ones); stack restarts run last."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
    items.sort(key=lambda item: item.get_closest_marker("stack_lifecycle") is not None)


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def test_state() -> Path:
    return _TEST_STATE


def run_stack_cli(command: str) -> subprocess.CompletedProcess[str]:
    """Run `deploy/stack COMMAND` as a user would, so the servers are not children of pytest."""
    return subprocess.run(
        [str(PROJECT_ROOT / "deploy" / "stack"), command], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def stack(config: Config) -> Iterator[Stack]:
    """The running stack; stopped at the end only if this test session started it."""
    stack = Stack(config)
    was_running = all(pid is not None for _, pid, _ in stack.status())
    started = run_stack_cli("start")
    assert started.returncode == 0, started.stdout + started.stderr
    sweep_dead_sessions(config)
    yield stack
    if not was_running:
        run_stack_cli("stop")


@pytest.fixture(scope="session")
def spark(config: Config, stack: Stack):
    from readnext.spark import get_spark, stop_spark

    session = get_spark(config, app_name="readnext-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    stop_spark(session)


SESSION_NAME = re.compile(r"(?:^|-)t(\d+)_")


def session_name(label: str) -> str:
    """A name of this test session's own: `t<pid>_<label>`, so a later session can tell whose it was."""
    return f"t{os.getpid()}_{label}"


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or earlier run) uses, for topics and tables."""
    return session_name(uuid.uuid4().hex[:8])


def sweep_dead_sessions(config: Config) -> list[str]:
    """Drop the HBase tables, Kafka topics and run files of test sessions whose process is gone.

    Fixtures remove what they made; a session killed half-way cannot, and its tables pile up. Run
    files are named for a deployment's table prefix (`batch-<prefix>.lock`, `metrics-speed-<prefix>`).
    """

    def dead(name: str) -> bool:
        match = SESSION_NAME.search(name)
        return match is not None and not pid_alive(int(match.group(1)))

    files = [p for p in (config.stack.state_dir / "run").glob("*-t*_*") if dead(p.name)]
    for path in files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    conn = hbase_connection(config)
    try:
        tables = [t.decode() for t in conn.tables() if dead(t.decode())]
        for table in tables:
            conn.delete_table(table, disable=True)
    finally:
        conn.close()
    admin = kafka_admin(config)
    try:
        topics = [t for t in admin.list_topics() if dead(t)]
        if topics:
            admin.delete_topics(topics)
    finally:
        admin.close()
    return tables + topics + [p.name for p in files]


@pytest.fixture
def hive_db(spark, unique_name) -> Iterator[str]:
    """A Hive database of the test's own, made current, so master-dataset tables start empty."""
    spark.sql(f"CREATE DATABASE {unique_name}")
    spark.sql(f"USE {unique_name}")
    yield unique_name
    spark.sql("USE default")
    # Hive's transaction handler pools metastore connections without validating them: after
    # test_faults restarts Derby, a drop meets a dead one, which the pool then discards.
    for attempt in range(5):
        try:
            spark.sql(f"DROP DATABASE IF EXISTS {unique_name} CASCADE")
            break
        except AnalysisException:
            if attempt == 4:
                raise


class Served(NamedTuple):
    """The `served` fixture: a generation's config, the ratings it was trained on, and the app serving it."""

    config: Config
    rows: list[tuple[int, int, int]]
    client: FlaskClient
    app: Flask

    def _issue(self, issue: Callable[[Tokens], str]) -> dict[str, str]:
        conn = hbase_connection(self.config)
        try:
            return {"Authorization": f"Bearer {issue(Tokens(conn, self.config))}"}
        finally:
            conn.close()

    def reader(self, user_id: int) -> dict[str, str]:
        """Headers with a new token of reader `user_id`, as sign-in issues one."""
        return self._issue(lambda tokens: tokens.issue_reader(user_id))

    def key(self, *scopes: str) -> dict[str, str]:
        """Headers with a new service key of these scopes, as `python -m serving_layer keys create` makes one."""
        return self._issue(lambda tokens: tokens.issue_key("test-service", set(scopes)))


@pytest.fixture(scope="session")
def served(stack, spark, tmp_path_factory) -> Iterator[Served]:
    """A generation on small data and an app serving it, with topics and tables of their own."""
    folder = tmp_path_factory.mktemp("api")
    name = session_name("served")
    base = load_config()
    config = dataclasses.replace(
        base,
        kafka=dataclasses.replace(base.kafka, ratings_topic=f"{name}-ratings", dead_letter_topic=f"{name}-dead"),
        hbase=dataclasses.replace(base.hbase, table_prefix=name),
        artifacts=dataclasses.replace(base.artifacts, uri=str(folder / "artifacts")),
        model=dataclasses.replace(base.model, rank=8, iterations=6),
        batch=dataclasses.replace(base.batch, evaluate=False, top_n=20, similar_k=5),
        limits=dataclasses.replace(base.limits, enabled=False),  # tests/test_auth.py checks the limits
    )
    spark.sql(f"CREATE DATABASE {name}")
    spark.sql(f"USE {name}")
    rows = taste_ratings(seed=31, users=80, books=90, per_user=15)
    ingest(spark, DataFiles(write_ratings(folder / "r.csv", rows), write_books(folder / "b.csv", books=95)))
    build_generation(spark, config)
    spark.sql("USE default")
    init(config)
    app = create_app(config)
    yield Served(config, rows, app.test_client(), app)
    drop_sandbox(config)


@pytest.fixture
def speed_rows(served: Served) -> Iterator[Callable[..., None]]:
    """Writes speed-view rows into the shared `served` generation; they are removed after the test.

    As the speed layer makes a row only from ratings on the topic, each event is also sent there
    (unless `on_topic` is False), and the call returns once the app's workers know the readers
    (serving_layer/speed_readers.py).
    """
    conn = hbase_connection(served.config)
    producer = RatingProducer(served.config)
    written: list[int] = []

    def write(events: dict[int, list[StreamEvent]], on_topic: bool = True) -> None:
        state = served.app.extensions["readnext"]
        update_readers(conn, served.config, state.snapshot().model, events, n=served.config.batch.top_n)
        written.extend(events)
        if on_topic:
            for user, stream in events.items():
                for event in stream:
                    producer.send(user, event.book_id, event.rating)
            readers = state.speed_readers
            wait_for(lambda: readers.ready and all(readers.might_have(u) for u in events), "the readers on the topic")

    yield write
    producer.close()
    with SpeedView(conn, served.config).writer() as out:
        for user in written:
            out.delete(user)
    conn.close()


@pytest.fixture
def live(stack, spark, hive_db, config, tmp_path, unique_name):
    """A current generation on small data, then the streaming job on topics of the test's own."""
    config = dataclasses.replace(
        config,
        kafka=dataclasses.replace(
            config.kafka, ratings_topic=f"{unique_name}-ratings", dead_letter_topic=f"{unique_name}-dead"
        ),
        hbase=dataclasses.replace(config.hbase, table_prefix=unique_name),
        artifacts=dataclasses.replace(config.artifacts, uri=str(tmp_path / "artifacts")),
        model=dataclasses.replace(config.model, rank=8, iterations=6),
        batch=dataclasses.replace(config.batch, evaluate=False, top_n=10, similar_k=3),
        speed=dataclasses.replace(config.speed, checkpoint_dir=tmp_path / "checkpoints", master_trigger_s=1, top_n=10),
    )
    rows = taste_ratings(seed=21, users=60, books=80, per_user=15)
    ingest(spark, DataFiles(write_ratings(tmp_path / "r.csv", rows), write_books(tmp_path / "b.csv", books=90)))
    build_generation(spark, config)
    job = stream.StreamingJob(spark, config).start()
    yield config, rows, job
    failures = job.failures()
    job.stop()
    drop_sandbox(config)
    assert not failures, failures


def drop_sandbox(config: Config) -> None:
    """Remove what a test wrote to the shared stack: HBase tables with its prefix, its Kafka topics."""
    conn = hbase_connection(config)
    try:
        for table in conn.tables():
            if table.decode().startswith(config.hbase.table_prefix + "_"):
                conn.delete_table(table, disable=True)
    finally:
        conn.close()
    admin = kafka_admin(config)
    try:
        topics = {config.kafka.ratings_topic, config.kafka.dead_letter_topic} & set(admin.list_topics())
        if topics:
            admin.delete_topics(sorted(topics))
    finally:
        admin.close()
