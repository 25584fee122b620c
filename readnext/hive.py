"""Run the HiveQL DDL in hive/, the single source of truth for table layouts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from readnext.config import PROJECT_ROOT

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

HIVE_DIR = PROJECT_ROOT / "hive"
CREATES = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


def statements(name: str) -> list[str]:
    """The statements of hive/<name>.sql, comments removed."""
    text = (HIVE_DIR / f"{name}.sql").read_text()
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def ensure_tables(spark: SparkSession, *names: str) -> None:
    """Create the tables of each named DDL file where they do not exist yet.

    The metastore is asked once which tables exist: a statement per table costs about 0.25 s
    even when the table is there, which every batch run and stream start would pay.
    """
    existing = {row.tableName.lower() for row in spark.sql("SHOW TABLES").collect()}
    for name in names:
        for statement in statements(name):
            creates = CREATES.match(statement)
            if creates is None or creates.group(1).lower() not in existing:
                spark.sql(statement)
