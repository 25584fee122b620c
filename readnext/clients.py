"""Clients for Kafka and HBase built from the configuration, so no layer spells out addresses."""

from __future__ import annotations

from typing import Any

import happybase
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from readnext.config import Config


def kafka_admin(config: Config, **overrides: Any) -> KafkaAdminClient:
    settings: dict[str, Any] = {"client_id": "readnext-admin"}
    settings.update(overrides)
    return KafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers, **settings)


def kafka_producer(config: Config, **overrides: Any) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement: a rating is never lost silently.

    Idempotent, so its retries across a broker restart never write a record twice; it retries
    until its delivery timeout rather than a count of attempts.
    """
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "client_id": "readnext"}
    settings.update(overrides)
    return KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, **settings)


def kafka_consumer(config: Config, *topics: str, **overrides: Any) -> KafkaConsumer:
    return KafkaConsumer(*topics, bootstrap_servers=config.kafka.bootstrap_servers, **overrides)


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions in order, empty when the topic does not exist (yet)."""
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def hbase_table_name(config: Config, name: str) -> str:
    """HBase table names carry the configured prefix, so several deployments can share a cluster."""
    return f"{config.hbase.table_prefix}_{name}"


def hbase_connection(config: Config) -> happybase.Connection:
    """A single connection, for short jobs such as one Spark partition's writes."""
    return happybase.Connection(config.hbase.host, config.hbase.port, timeout=config.hbase.timeout_ms)


def hbase_pool(config: Config, size: int = 4) -> happybase.ConnectionPool:
    """A happybase pool on the Thrift server (binary protocol, buffered transport: the server's defaults)."""
    return happybase.ConnectionPool(
        size, host=config.hbase.host, port=config.hbase.port, timeout=config.hbase.timeout_ms
    )
