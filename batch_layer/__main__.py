"""python -m batch_layer {ingest,train,run,tune,evaluate,show,download,generate}: the batch layer's command line.

The same file is the entry point for spark-submit (see deploy/submit).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from readnext.config import load_config
from readnext.processes import lower_priority


def _add_data_options(parser: argparse.ArgumentParser, files: tuple[str, ...]) -> None:
    parser.add_argument("--data", type=Path, help="folder with the goodbooks-10k files")
    parser.add_argument("--ratings", type=Path, help="ratings CSV (default: ratings.csv in --data)")
    for name in files:
        parser.add_argument(f"--{name}", type=Path, help=f"{name.replace('-', '_')}.csv (default: from --data)")
    parser.add_argument("--user-col", default="user_id", help="ratings column holding the user id")
    parser.add_argument("--book-col", default="book_id", help="ratings column holding the book id")
    parser.add_argument("--rating-col", default="rating", help="ratings column holding the 1-5 rating")


def _files(args: argparse.Namespace):  # -> DataFiles
    from batch_layer.ingest import DataFiles

    if args.data:
        found = DataFiles.in_folder(args.data, args.ratings)
    elif args.ratings:
        found = DataFiles(args.ratings)
    else:
        raise SystemExit("error: give --data FOLDER or --ratings FILE")
    return DataFiles(
        ratings=found.ratings,
        books=getattr(args, "books", None) or found.books,
        tags=getattr(args, "tags", None) or found.tags,
        book_tags=getattr(args, "book_tags", None) or found.book_tags,
        to_read=getattr(args, "to_read", None) or found.to_read,
    )


def _ratings(args: argparse.Namespace):  # -> quality.Ratings
    from batch_layer.quality import read_ratings

    path = _files(args).ratings
    data = read_ratings(path, args.user_col, args.book_col, args.rating_col, args.time_col)
    if not len(data.users):
        raise SystemExit(f"error: {path} holds no usable ratings")
    return data


def _evaluate(spark, config, args: argparse.Namespace) -> int:
    from batch_layer.report import build_report, read_books, write_report

    files = _files(args)
    books = read_books(files.books, args.book_col)
    report = build_report(spark, config, _ratings(args), books, args.ranks, args.regs, str(files.ratings))
    path = write_report(report, args.out)
    print(f"report written to {path}")
    return 0


def _tune(spark, config, args: argparse.Namespace) -> int:
    import json

    from batch_layer.tune import grid_search

    names = ("rank", "reg", "alpha", "rating_offset", "iterations")
    grid = {n: getattr(args, n) for n in names if getattr(args, n)}
    if not grid:
        raise SystemExit("error: give at least one of --rank --reg --alpha --rating-offset --iterations")
    result = grid_search(spark, config, _ratings(args), grid)
    for row in sorted(result["grid"], key=lambda r: -r[f"ndcg@{config.evaluation.k}"]):
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"best on the {result['validation_readers']} validation readers: {json.dumps(result['best'])}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _serve(spark, config, args: argparse.Namespace) -> int:
    import signal
    import threading

    from batch_layer.service import BatchService
    from readnext import metrics

    metrics.serve(config.metrics.batch_port, "batch service")
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt  # a run in progress removes what it wrote; the current generation stays

    signal.signal(signal.SIGTERM, on_term)
    try:
        BatchService(spark, config).run(stop)
    except KeyboardInterrupt:
        logging.getLogger("batch_layer").info("batch service: stopped")
    return 0


def _download(args: argparse.Namespace) -> int:
    from batch_layer.download import DEFAULT_BASE_URL, DownloadError, download

    try:
        download(args.to, args.base_url or DEFAULT_BASE_URL)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _show(args: argparse.Namespace) -> int:
    from batch_layer.show import show

    print(show(load_config(), args.user, args.n))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from batch_layer.generate import generate

    generate(args.source, args.out, args.users, args.seed)
    return 0


def _ingest(spark, config, args: argparse.Namespace) -> int:
    from batch_layer.ingest import RatingColumns, ingest

    ingest(spark, _files(args), RatingColumns(args.user_col, args.book_col, args.rating_col))
    return 0


def _train(spark, config, args: argparse.Namespace) -> int:
    from batch_layer.generation import build_generation
    from batch_layer.service import BatchRunning, batch_lock

    try:
        with batch_lock(config):
            generation = build_generation(spark, config)
    except BatchRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"generation {generation} is current")
    return 0


def _run(spark, config, args: argparse.Namespace) -> int:
    return _ingest(spark, config, args) or _train(spark, config, args)


# Commands that need no Spark, and those that run on one SparkSession.
LOCAL_COMMANDS = {"download": _download, "show": _show, "generate": _generate}
SPARK_COMMANDS = {
    "ingest": _ingest,
    "train": _train,
    "run": _run,
    "serve": _serve,
    "tune": _tune,
    "evaluate": _evaluate,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m batch_layer", description="ReadNext batch layer")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest_p = sub.add_parser("ingest", help="import goodbooks-10k files into the Hive master dataset")
    _add_data_options(ingest_p, ("books", "tags", "book-tags", "to-read"))
    sub.add_parser("train", help="train ALS and publish a new generation of batch views")
    serve_p = sub.add_parser("serve", help="the batch service: a new generation whenever enough new ratings arrived")
    serve_p.add_argument(
        "--own-session",
        action="store_true",
        help="it runs in a session of its own (deploy/service does so): lower the whole session's priority too",
    )
    run_p = sub.add_parser("run", help="ingest, then train and publish (the whole batch run)")
    _add_data_options(run_p, ("books", "tags", "book-tags", "to-read"))
    evaluate_p = sub.add_parser(
        "evaluate", help="write the quality report: baselines, protocols, plots (docs/quality.md)"
    )
    _add_data_options(evaluate_p, ("books",))
    evaluate_p.add_argument("--time-col", help="ratings column holding the time (latest rating of a pair wins)")
    evaluate_p.add_argument(
        "--out", type=Path, default=Path("docs/quality"), help="report folder (default: %(default)s)"
    )
    evaluate_p.add_argument("--ranks", type=int, nargs="+", default=[32, 64, 128, 256], help="ranks to compare")
    evaluate_p.add_argument(
        "--regs", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0], help="regularisations to compare"
    )
    show_p = sub.add_parser("show", help="print the current generation's metrics and a reader's top-N from HBase")
    show_p.add_argument("--user", type=int, help="reader id (default: the first one)")
    show_p.add_argument("-n", type=int, default=10)
    tune_p = sub.add_parser("tune", help="grid search over ALS settings on the validation readers")
    _add_data_options(tune_p, ())
    tune_p.add_argument("--time-col", help="ratings column holding the time (latest rating of a pair wins)")
    for name, kind in (("rank", int), ("reg", float), ("alpha", float), ("rating-offset", float), ("iterations", int)):
        tune_p.add_argument(f"--{name}", type=kind, nargs="+", help=f"values of [model] {name.replace('-', '_')}")
    tune_p.add_argument("--out", type=Path, help="write the results here as JSON")
    download_p = sub.add_parser("download", help="download goodbooks-10k from its public home")
    download_p.add_argument("--to", type=Path, required=True, help="folder to download into")
    download_p.add_argument("--base-url", help="where the files are (default: the dataset's public home)")
    generate_p = sub.add_parser("generate", help="make goodbooks-shaped ratings at any scale")
    generate_p.add_argument("--from", dest="source", type=Path, required=True, help="real ratings CSV to resample")
    generate_p.add_argument("--out", type=Path, required=True, help="CSV to write")
    generate_p.add_argument("--users", type=int, required=True, help="number of readers to generate")
    generate_p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.command in LOCAL_COMMANDS:
        return LOCAL_COMMANDS[args.command](args)

    from batch_layer import stages
    from readnext import logs
    from readnext.spark import MetastoreUnavailable, get_spark, require_metastore, stop_spark

    config = load_config()
    if args.command == "serve":  # the long-running one: its lines in the configured format
        logs.configure(config)
        logging.getLogger("kafka").setLevel(logging.WARNING)
        lower_priority(config.batch.service_nice, session=args.own_session)  # before Spark's JVM starts
    else:  # the service waits for the metastore at each check; a one-off run refuses to start
        try:
            require_metastore(config)
        except MetastoreUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    stages.remember_durations(config.stack.state_dir / "run" / f"stage-seconds-{config.hbase.table_prefix}.json")
    spark = get_spark(config, app_name=f"readnext-batch-{args.command}", java_options=config.batch.java_options.split())
    try:
        return SPARK_COMMANDS[args.command](spark, config, args)
    finally:
        stop_spark(spark)


if __name__ == "__main__":
    sys.exit(main())
