"""A Hive table written by one Spark application is there for the next one (the metastore persists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from readnext.config import PROJECT_ROOT, sandbox_env

SCRIPT = """
import json, sys
from readnext.config import load_config
from readnext.spark import get_spark, stop_spark
spark = get_spark(load_config(), app_name="metastore-persistence")
if sys.argv[1] == "write":
    spark.sql("CREATE TABLE books_seen (book_id INT, title STRING) STORED AS PARQUET")
    spark.sql("INSERT INTO books_seen VALUES (1, 'The Hunger Games'), (2, 'Harry Potter')")
else:
    rows = spark.sql("SELECT book_id, title FROM books_seen ORDER BY book_id").collect()
    print("ROWS=" + json.dumps([list(r) for r in rows]))
stop_spark(spark)
"""


def _run(step: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_table_survives_into_a_new_spark_application(stack, tmp_path):
    env = dict(os.environ, **sandbox_env(tmp_path, "persistence"))
    _run("write", env)
    assert (tmp_path / "metastore_db").is_dir(), "the metastore lives on the stack's Derby server"
    out = _run("read", env)
    rows = json.loads(next(line for line in out.splitlines() if line.startswith("ROWS="))[5:])
    assert rows == [[1, "The Hunger Games"], [2, "Harry Potter"]]
