"""The one SparkSession factory: Hive support on the configured metastore, the Kafka connector on the classpath."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from readnext import class_archive
from readnext.config import Config, local_or_uri
from readnext.processes import pid_alive

log = logging.getLogger("readnext.spark")

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class SparkSetupError(RuntimeError):
    """Spark cannot be configured as asked (for example the connector jars were never fetched)."""


class MetastoreUnavailable(RuntimeError):
    """The configured Hive metastore server does not answer."""


_METASTORE_ADDRESS = re.compile(r"^(?:thrift|jdbc:derby)://([^:/]+):(\d+)")


def require_metastore(config: Config, timeout_s: float = 3) -> None:
    """Refuse early, in one line, when the metastore server is away.

    Without this a Spark job meets it at its first table access, after Spark's start-up, with
    thousands of lines of Java traces that end in "Unable to instantiate SessionHiveMetaStoreClient".
    An embedded metastore (no server) always passes.
    """
    sc = config.spark
    url = sc.metastore_uri or sc.metastore_jdbc_url
    match = _METASTORE_ADDRESS.match(url)
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        setting = "metastore_uri" if sc.metastore_uri else "metastore_jdbc_url"
        raise MetastoreUnavailable(
            f"the Hive metastore at {host}:{port} does not answer ({e.strerror or e}); start it "
            f"(deploy/stack start) or point [spark] {setting} at one that runs"
        ) from None


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


LOG4J2 = """# Written by readnext.spark for each application: the console shows {level} and above,
# {log} keeps everything at INFO, rotated like every log of the stack ([logging]).
status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = {level}
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{ISO8601}} %p %c: %m%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = {max_bytes}
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.fileIndex = min
appender.file.strategy.max = {backups}
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
rootLogger.appenderRef.file.ref = file
"""


def log4j2_file(config: Config, app_name: str) -> Path:
    """Spark's logging for one application: `[spark] log_level` on the console, all of it in a file."""
    folder = config.stack.state_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = config.stack.state_dir / "spark" / f"log4j2-{app_name}.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        LOG4J2.format(
            level=config.spark.log_level.upper(),
            log=folder / f"spark-{app_name}.log",
            max_bytes=config.logging.max_bytes,
            backups=config.logging.backups,
        )
    )
    return path


# A streaming query writes two checkpoint files per micro-batch (offsets, then commits). Without
# Hadoop's native library the local file system forks `chmod` for each file it creates, and
# FileContext's rename forks `readlink` a few times more: ten processes per micro-batch, 50 ms
# each for walCommit and commitOffsets. Hadoop's FileSystem API on the raw local file system
# (no .crc side files; rename(2) is atomic) forks one `chmod` per file: 9 ms each
# (docs/benchmarks.md). The speed job's other local files are the master query's Parquet files
# in the warehouse, which need no .crc either.
STREAMING_CONF = {
    "spark.sql.streaming.checkpointFileManagerClass": (
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
    ),
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
}


def spark_conf(config: Config, app_name: str = "readnext", streaming: bool = False) -> dict[str, str]:
    """The settings every ReadNext Spark application runs with, also usable as spark-submit --conf.

    `streaming` adds the settings of the speed layer's job (`STREAMING_CONF`).
    """
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
        # One BLAS thread per task: Spark runs a task per core already (readnext/__init__.py sets
        # the same for the driver, whose environment local-mode executors share).
        "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
        "spark.executorEnv.OMP_NUM_THREADS": "1",
        # ALS checkpoints its factors every [model] checkpoint_interval iterations; delete each
        # checkpoint once its RDD is garbage-collected instead of keeping them all until the end.
        "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
    }
    java_options = [f"-Dlog4j2.configurationFile=file:{log4j2_file(config, app_name)}"]
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
        java_options.append(f"-Dderby.system.home={sc.metastore_dir}")
    conf["spark.driver.extraJavaOptions"] = " ".join(java_options)
    if streaming:
        conf.update(STREAMING_CONF)
    return conf


def blas_name(spark: SparkSession) -> str:
    """The BLAS implementation Spark's netlib loaded in the driver's JVM (JNIBLAS: the native one)."""
    return spark.sparkContext._jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName()


def get_spark(
    config: Config, app_name: str = "readnext", java_options: Sequence[str] = (), streaming: bool = False
) -> SparkSession:
    """Return the process's SparkSession, creating it with `spark_conf` on first use.

    `java_options` are added to the driver JVM's, with the class-data archive's
    (readnext/class_archive.py) when `[spark] class_archive` is on.
    """
    from pyspark.sql import SparkSession

    # pyspark takes the workers' Python from the environment, not from the Spark configuration.
    os.environ.setdefault("PYSPARK_PYTHON", config.spark.python or sys.executable)
    config.spark.metastore_dir.mkdir(parents=True, exist_ok=True)
    config.spark.warehouse_dir.mkdir(parents=True, exist_ok=True)
    conf = spark_conf(config, app_name, streaming)
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: its --master decides
        del conf["spark.master"]
    else:
        extra = list(java_options)
        if config.spark.class_archive:
            folder = config.stack.state_dir / "spark"
            extra += class_archive.java_options(folder, conf.get("spark.driver.extraClassPath", ""))
        conf["spark.driver.extraJavaOptions"] = " ".join([conf["spark.driver.extraJavaOptions"], *extra])
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setCheckpointDir(_checkpoint_dir(config))
    log.info("Spark %s (%s): BLAS %s", spark.version, spark.sparkContext.master, blas_name(spark))
    return spark


def _checkpoint_dir(config: Config) -> str:
    """This application's checkpoint folder, `<checkpoint_dir>/app-<pid>`.

    `stop_spark` removes it; a killed application cannot, so local folders of processes that are
    gone are removed here, before a new one is made (on a cluster file system, the operator's job).
    """
    base = local_or_uri(config.spark.checkpoint_dir)
    if "://" not in base and Path(base).is_dir():
        for folder in Path(base).glob("app-*"):
            pid = folder.name.removeprefix("app-")
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
    return f"{base.rstrip('/')}/app-{os.getpid()}"


def stop_spark(spark: SparkSession) -> None:
    """Stop the session and delete its RDD checkpoints (ALS's), which Spark leaves behind for good."""
    sc = spark.sparkContext
    folder = sc.getCheckpointDir()
    if folder:
        jvm = sc._jvm
        path = jvm.org.apache.hadoop.fs.Path(folder).getParent()  # Spark adds a folder of its own
        path.getFileSystem(sc._jsc.hadoopConfiguration()).delete(path, True)
    spark.stop()


def read_kafka_topic(spark: SparkSession, config: Config, topic: str) -> DataFrame:
    """A batch read of a whole Kafka topic (key, value, topic, partition, offset, timestamp)."""
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
