"""Configuration in one place: packaged defaults, an optional TOML file, then environment variables.

Every layer reads its settings from `load_config()`, so pointing the project at a real cluster
is a matter of a file (`READNEXT_CONFIG`) or of variables named `READNEXT_<SECTION>_<KEY>`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "READNEXT_"


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type."""


@dataclasses.dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    ratings_topic: str
    dead_letter_topic: str
    send_timeout_s: float


@dataclasses.dataclass(frozen=True)
class HBaseConfig:
    host: str
    port: int
    table_prefix: str
    timeout_ms: int


@dataclasses.dataclass(frozen=True)
class SparkConfig:
    master: str
    driver_memory: str
    shuffle_partitions: int
    ui_enabled: bool
    python: str
    metastore_uri: str
    metastore_jdbc_url: str
    metastore_dir: Path
    warehouse_dir: Path
    checkpoint_dir: str
    log_level: str
    class_archive: bool


@dataclasses.dataclass(frozen=True)
class ArtifactConfig:
    uri: str
    s3_endpoint: str


@dataclasses.dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    jars_dir: Path
    start_timeout_s: int
    kafka_heap: str
    kafka_controller_port: int
    hbase_heap: str
    thrift_heap: str
    zookeeper_port: int
    derby_port: int
    derby_heap: str
    thrift_info_port: int
    memcached: bool
    memcached_port: int
    memcached_memory_mb: int
    prometheus: bool


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    feedback: str
    rank: int
    reg: float
    alpha: float
    iterations: int
    rating_offset: float
    seed: int
    checkpoint_interval: int
    blocks: int

    @property
    def implicit(self) -> bool:
        return self.feedback == "implicit"


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    top_n: int
    similar_k: int
    keep_generations: int
    evaluate: bool
    popularity_prior_count: float
    check_s: float
    min_new_ratings: int
    min_age_s: float
    interval_s: float
    service_nice: int
    java_options: str


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """One protocol for the batch run's check, the quality report and `tune` (batch_layer/evaluate.py)."""

    reader_share: float
    max_readers: int
    min_ratings: int
    fold_fraction: float
    relevant_min_rating: float
    k: int
    max_known_readers: int


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    explicit_reg: float
    ease_lambda: float


@dataclasses.dataclass(frozen=True)
class SpeedConfig:
    trigger_ms: int
    master_trigger_s: int
    max_events_per_batch: int
    master_max_events: int
    master_process: bool
    master_nice: int
    fetch_max_wait_ms: int
    read_timeout_s: float
    checkpoint_dir: Path
    store_attempts: int
    store_retry_s: float
    top_n: int
    rebase_chunk: int
    rebase_pause: float
    topic_partitions: int
    java_options: str


@dataclasses.dataclass(frozen=True)
class SupervisorConfig:
    backoff_s: float
    backoff_max_s: float
    stable_s: float
    stop_timeout_s: float


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    refresh_s: float
    default_n: int
    max_n: int
    max_body_bytes: int
    max_anonymous_ratings: int
    popularity_penalty: float
    max_per_author: int
    secret_key: str
    secret_key_fallbacks: str
    secure_cookies: bool
    demo_sign_in: bool
    token_cache_s: float
    batch_rows_cached: int
    speed_readers_rescan_s: float
    speed_rows_cached: int
    speed_readers_fetch_wait_ms: int
    speed_readers_fetch_min_bytes: int
    workers: int
    threads: int


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    format: str
    level: str
    max_bytes: int
    backups: int


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Where each layer serves its Prometheus metrics, and where the stack's Prometheus listens (docs/operations.md)."""

    speed_port: int
    batch_port: int
    web_target: str
    prometheus_port: int
    scrape_interval_s: int
    speed_lag_alert: int
    serving_p99_alert_s: float
    serving_error_ratio_alert: float


@dataclasses.dataclass(frozen=True)
class AccountsConfig:
    """Reader accounts, their tokens and service keys (readnext/accounts.py, docs/security.md)."""

    first_reader_id: int
    password_method: str
    token_ttl_s: int
    min_password_length: int


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """Rate limits in Flask-Limiter's notation ("10/minute;100/hour"), shared by every worker through storage_uri."""

    enabled: bool
    storage_uri: str
    sign_in_per_client: str
    sign_in_per_account: str
    sign_up_per_client: str
    ratings_per_client: str
    ratings_per_reader: str
    ratings_per_key: str
    search_per_client: str
    fold_in_per_client: str
    status_per_client: str
    max_query_words: int


@dataclasses.dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    hbase: HBaseConfig
    spark: SparkConfig
    artifacts: ArtifactConfig
    stack: StackConfig
    model: ModelConfig
    batch: BatchConfig
    evaluation: EvaluationConfig
    quality: QualityConfig
    speed: SpeedConfig
    supervisor: SupervisorConfig
    serving: ServingConfig
    accounts: AccountsConfig
    limits: LimitsConfig
    metrics: MetricsConfig
    logging: LoggingConfig


def local_or_uri(value: str) -> str:
    """A setting that is a URI (hdfs://, s3://) as it is, or a local path resolved from the project root."""
    if "://" in value:
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e


def _coerce(value: Any, kind: type, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, failing with the setting's name."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is Path:
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else PROJECT_ROOT / path
    return str(value)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the defaults, merge `path` (or `$READNEXT_CONFIG`) over them, then apply the environment."""
    env = os.environ if env is None else env
    raw = _read_toml(DEFAULTS_FILE)
    extra = path or env.get(ENV_PREFIX + "CONFIG")
    if extra:
        for section, values in _read_toml(Path(extra)).items():
            if section not in raw:
                raise ConfigError(f"{extra}: unknown section [{section}]")
            raw[section].update(values)
    sections = {}
    for name, section_cls in get_type_hints(Config).items():
        values = raw.get(name, {})
        unknown = set(values) - set(get_type_hints(section_cls))
        if unknown:
            raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
        kwargs = {}
        for key, kind in get_type_hints(section_cls).items():
            var = f"{ENV_PREFIX}{name}_{key}".upper()
            value = env.get(var, values.get(key))
            if value is None:
                raise ConfigError(f"missing setting [{name}] {key} (or ${var})")
            kwargs[key] = _coerce(value, kind, f"[{name}] {key}")
        sections[name] = section_cls(**kwargs)
    if sections["logging"].format not in ("text", "json"):
        raise ConfigError(f"[logging] format: expected 'text' or 'json', got {sections['logging'].format!r}")
    if sections["model"].feedback not in ("implicit", "explicit"):
        raise ConfigError(f"[model] feedback: expected 'implicit' or 'explicit', got {sections['model'].feedback!r}")
    return Config(**sections)


def sandbox_env(folder: Path, name: str, derby_port: int = 1527) -> dict[str, str]:
    """Environment overrides that give a run its own corner of the shared local stack.

    Its own metastore database (on the stack's Derby server), warehouse, artifact store, HBase
    table prefix, Kafka topics and checkpoints, all under `folder` or named after `name`: for
    tests and benchmarks that must not touch what the demo wrote.
    """
    return {
        ENV_PREFIX
        + "SPARK_METASTORE_JDBC_URL": f"jdbc:derby://127.0.0.1:{derby_port}/{folder}/metastore_db;create=true",
        ENV_PREFIX + "SPARK_WAREHOUSE_DIR": str(folder / "warehouse"),
        ENV_PREFIX + "ARTIFACTS_URI": str(folder / "artifacts"),
        ENV_PREFIX + "HBASE_TABLE_PREFIX": name,
        ENV_PREFIX + "KAFKA_RATINGS_TOPIC": f"{name}-ratings",
        ENV_PREFIX + "KAFKA_DEAD_LETTER_TOPIC": f"{name}-dead",
        ENV_PREFIX + "SPEED_CHECKPOINT_DIR": str(folder / "checkpoints"),
        ENV_PREFIX + "SPARK_CHECKPOINT_DIR": str(folder / "spark-checkpoints"),
    }
