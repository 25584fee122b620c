"""python -m speed_layer {stream,produce}: the speed layer's command line (also for spark-submit)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from readnext.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speed_layer", description="ReadNext speed layer")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stream", help="run the streaming job on the Kafka ratings topic")
    produce_p = sub.add_parser("produce", help="post ratings (user_id,book_id,rating[,ts_ms]) from a CSV or stdin")
    produce_p.add_argument("file", nargs="?", type=Path, help="CSV file (default: stdin)")
    produce_p.add_argument("--rate", type=float, help="ratings per second (default: as fast as possible)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    config = load_config()
    if args.command == "produce":
        from speed_layer.produce import produce

        if args.file:
            with args.file.open() as f:
                sent, refused = produce(config, f, args.rate)
        else:
            sent, refused = produce(config, sys.stdin, args.rate)
        print(f"sent {sent} rating(s), refused {refused}")
        return 1 if refused and not sent else 0

    from readnext.spark import get_spark
    from speed_layer.stream import run

    def stop_on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    spark = get_spark(config, app_name="readnext-speed")
    spark.sparkContext.setLogLevel("WARN")
    try:
        run(spark, config)
    except KeyboardInterrupt:
        logging.getLogger("speed_layer").info("stopping: the queries resume from their checkpoints next time")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
