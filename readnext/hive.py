"""Run the HiveQL DDL in hive/, the single source of truth for table layouts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from readnext.config import PROJECT_ROOT

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

HIVE_DIR = PROJECT_ROOT / "hive"


def statements(name: str) -> list[str]:
    """The statements of hive/<name>.sql, comments removed."""
    text = (HIVE_DIR / f"{name}.sql").read_text()
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def ensure_tables(spark: SparkSession, *names: str) -> None:
    """Create the tables of each named DDL file where they do not exist yet."""
    for name in names:
        for statement in statements(name):
            spark.sql(statement)
