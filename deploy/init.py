"""python -m deploy.init: create what the layers expect on the stack (Kafka topics, HBase tables). Safe to repeat.

`deploy/stack start` runs it; the app factory never touches the network, so a web server can
start before the stack and say in /readyz what is missing.
"""

from __future__ import annotations

import sys

from readnext.accounts import Accounts, Tokens
from readnext.clients import hbase_connection
from readnext.config import Config, load_config
from readnext.events import ensure_topics
from readnext.views import GenerationRecords, SpeedView


def init(config: Config) -> None:
    """The ratings and dead-letter topics; the speed view's, the generation records', accounts' and tokens' tables."""
    ensure_topics(config)
    conn = hbase_connection(config)
    try:
        SpeedView(conn, config).ensure()
        GenerationRecords(conn, config).ensure()
        Accounts(conn, config).ensure()
        Tokens(conn, config).ensure()
    finally:
        conn.close()


def main() -> int:
    config = load_config()
    init(config)
    print(
        f"topics {config.kafka.ratings_topic}, {config.kafka.dead_letter_topic} and the HBase tables of "
        f"prefix {config.hbase.table_prefix} are in place"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
