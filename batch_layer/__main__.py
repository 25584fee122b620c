"""python -m batch_layer {ingest,train,run,tune,show,download,generate}: the batch layer's command line.

The same file is the entry point for spark-submit (see deploy/submit).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from readnext.config import load_config


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="folder with the goodbooks-10k files")
    parser.add_argument("--ratings", type=Path, help="ratings CSV (default: ratings.csv in --data)")
    for name in ("books", "tags", "book-tags", "to-read"):
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
        books=args.books or found.books,
        tags=args.tags or found.tags,
        book_tags=args.book_tags or found.book_tags,
        to_read=args.to_read or found.to_read,
    )


def _tune(spark, config, args: argparse.Namespace) -> int:
    import json

    from batch_layer.tune import grid_search

    names = ("rank", "reg", "alpha", "rating_offset", "iterations")
    grid = {n: getattr(args, n) for n in names if getattr(args, n)}
    if not grid:
        raise SystemExit("error: give at least one of --rank --reg --alpha --rating-offset --iterations")
    result = grid_search(spark, config, grid)
    for row in sorted(result["grid"], key=lambda r: -r[f"ndcg@{config.batch.eval_k}"]):
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"best on validation: {result['best']}; on test: {json.dumps(result['test']['als'])}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch_layer", description="ReadNext batch layer")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest_p = sub.add_parser("ingest", help="import goodbooks-10k files into the Hive master dataset")
    _add_data_options(ingest_p)
    sub.add_parser("train", help="train ALS and publish a new generation of batch views")
    run_p = sub.add_parser("run", help="ingest, then train and publish (the whole batch run)")
    _add_data_options(run_p)
    show_p = sub.add_parser("show", help="print the current generation's metrics and a reader's top-N from HBase")
    show_p.add_argument("--user", type=int, help="reader id (default: the first one)")
    show_p.add_argument("-n", type=int, default=10)
    tune_p = sub.add_parser("tune", help="grid search over ALS settings on a validation split")
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
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.command == "download":
        from batch_layer.download import DEFAULT_BASE_URL, DownloadError, download

        try:
            download(args.to, args.base_url or DEFAULT_BASE_URL)
        except DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "show":
        from batch_layer.show import show

        print(show(load_config(), args.user, args.n))
        return 0
    if args.command == "generate":
        from batch_layer.generate import generate

        generate(args.source, args.out, args.users, args.seed)
        return 0

    from batch_layer.generation import build_generation
    from batch_layer.ingest import RatingColumns, ingest
    from readnext.spark import get_spark

    config = load_config()
    spark = get_spark(config, app_name=f"readnext-batch-{args.command}")
    spark.sparkContext.setLogLevel("WARN")
    try:
        if args.command in ("ingest", "run"):
            ingest(spark, _files(args), RatingColumns(args.user_col, args.book_col, args.rating_col))
        if args.command == "tune":
            return _tune(spark, config, args)
        if args.command in ("train", "run"):
            generation = build_generation(spark, config)
            print(f"generation {generation} is current")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
