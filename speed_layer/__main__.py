"""python -m speed_layer {stream,produce}: the speed layer's command line (also for spark-submit)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from readnext import logs
from readnext.config import Config, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speed_layer", description="ReadNext speed layer")
    sub = parser.add_subparsers(dest="command", required=True)
    stream_p = sub.add_parser("stream", help="run the streaming job on the Kafka ratings topic")
    stream_p.add_argument(
        "--only", choices=("speed", "master"), help="run one of the two queries (default: both, see [speed])"
    )
    produce_p = sub.add_parser("produce", help="post ratings (user_id,book_id,rating[,ts_ms]) from a CSV or stdin")
    produce_p.add_argument("file", nargs="?", type=Path, help="CSV file (default: stdin)")
    produce_p.add_argument("--rate", type=float, help="ratings per second (default: as fast as possible)")
    args = parser.parse_args(argv)
    config = load_config()
    logs.configure(config)
    for chatty in ("kafka", "py4j"):  # py4j logs every callback (each micro-batch) at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.command == "produce":
        from speed_layer.produce import NotSent, produce

        try:
            if args.file:
                with args.file.open() as f:
                    sent, refused = produce(config, f, args.rate)
            else:
                sent, refused = produce(config, sys.stdin, args.rate)
        except NotSent as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"sent {sent} rating(s), refused {refused}")
        return 1 if refused and not sent else 0

    return _stream(config, args.only)


def _stream(config: Config, only: str | None) -> int:
    """Both queries; the master-dataset query in a child process when [speed] master_process is set.

    In a process of its own, the master query's bursts of Python and Hive work every
    master_trigger_s seconds do not hold up the speed query's micro-batches (one Python
    interpreter, one driver). The parent stops with an error if the child dies; a query run with
    --only stops when the process that started it is gone, so no orphan keeps a checkpoint busy.
    """
    from readnext import metrics

    if only is None:  # before any metric exists: both processes count into this folder
        metrics.multiprocess_folder(config, "speed")
    from readnext.spark import get_spark, stop_spark
    from speed_layer.stream import run

    log = logging.getLogger("speed_layer")
    if only is None:
        metrics.serve(config.metrics.speed_port, "speed layer")

    def stop_on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    queries = (only,) if only else ("speed", "master")
    if only == "master":  # the background query: the speed query gets the cores when both want them
        os.nice(config.speed.master_nice)
    child = None
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # under spark-submit: one application, both queries
    if only is None and config.speed.master_process and not submitted:
        queries = ("speed",)
        child = subprocess.Popen([sys.executable, "-m", "speed_layer", "stream", "--only", "master"])
        log.info("master-dataset query in process %d", child.pid)

    parent = os.getppid()

    def stop_now() -> bool:
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"the master-dataset query's process exited with code {child.returncode}")
        if only is not None and os.getppid() != parent:
            log.info("the process that started this query is gone: stopping")
            return True
        return False

    spark = get_spark(
        config,
        app_name=f"readnext-speed-{only or 'stream'}",
        java_options=config.speed.java_options.split(),
        streaming=True,
    )
    try:
        run(spark, config, until=stop_now, queries=queries)
    except KeyboardInterrupt:
        log.info("stopping: the queries resume from their checkpoints next time")
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait(timeout=120)
        stop_spark(spark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
