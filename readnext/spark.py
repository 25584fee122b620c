"""The one SparkSession factory: Hive support on the configured metastore, the Kafka connector on the classpath."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from readnext.config import Config

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class SparkSetupError(RuntimeError):
    """Spark cannot be configured as asked (for example the connector jars were never fetched)."""


def connector_jars(config: Config) -> list[Path]:
    """The Spark–Kafka connector jars fetched by `deploy/setup` (spark-sql-kafka and what it needs)."""
    folder = config.stack.jars_dir / "spark"
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("spark-sql-kafka-0-10_") for j in jars):
        raise SparkSetupError(f"the Spark-Kafka connector is missing in {folder}: run 'make setup' first")
    return jars


def derby_client_jars(config: Config) -> list[Path]:
    """The Derby network client, for a metastore on the stack's Derby server."""
    jars = sorted((config.stack.jars_dir / "derby").glob("derbyclient-*.jar"))
    if not jars:
        raise SparkSetupError(f"the Derby client is missing in {config.stack.jars_dir / 'derby'}: run 'make setup'")
    return jars


def spark_conf(config: Config) -> dict[str, str]:
    """The settings every ReadNext Spark application runs with, also usable as spark-submit --conf."""
    sc = config.spark
    conf = {
        "spark.master": sc.master,
        "spark.driver.memory": sc.driver_memory,
        "spark.sql.shuffle.partitions": str(sc.shuffle_partitions),
        "spark.ui.enabled": str(sc.ui_enabled).lower(),
        "spark.sql.warehouse.dir": sc.warehouse_dir.as_uri(),
        "spark.sql.catalogImplementation": "hive",
        "spark.jars": ",".join(str(j) for j in connector_jars(config)),
        "spark.sql.session.timeZone": "UTC",
        # Fair sharing between concurrent jobs: the speed layer's frequent small micro-batches
        # get cores while its master-dataset query's Hive append runs (scheduler pools by query).
        "spark.scheduler.mode": "FAIR",
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),
    }
    if sc.metastore_uri:
        conf["spark.hadoop.hive.metastore.uris"] = sc.metastore_uri
    elif sc.metastore_jdbc_url:
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = sc.metastore_jdbc_url
        if sc.metastore_jdbc_url.startswith("jdbc:derby://"):
            conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] = "org.apache.derby.jdbc.ClientDriver"
            conf["spark.driver.extraClassPath"] = os.pathsep.join(str(j) for j in derby_client_jars(config))
    else:
        db = sc.metastore_dir / "metastore_db"
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={db};create=true"
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={sc.metastore_dir}"
    return conf


def get_spark(config: Config, app_name: str = "readnext") -> SparkSession:
    """Return the process's SparkSession, creating it with `spark_conf` on first use."""
    from pyspark.sql import SparkSession

    # pyspark takes the workers' Python from the environment, not from the Spark configuration.
    os.environ.setdefault("PYSPARK_PYTHON", config.spark.python or sys.executable)
    config.spark.metastore_dir.mkdir(parents=True, exist_ok=True)
    config.spark.warehouse_dir.mkdir(parents=True, exist_ok=True)
    conf = spark_conf(config)
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: its --master decides
        del conf["spark.master"]
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.enableHiveSupport().getOrCreate()


def read_kafka_topic(spark: SparkSession, config: Config, topic: str) -> DataFrame:
    """A batch read of a whole Kafka topic (key, value, topic, partition, offset, timestamp)."""
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
