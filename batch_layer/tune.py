"""A grid search over the ALS settings, scored on the validation readers, never on the test readers.

It uses the quality report's split (batch_layer.quality, protocol (a)): each combination is
fitted on the training readers and scored by folding in the validation readers. The test readers
are left for `python -m batch_layer evaluate`, which scores the chosen defaults once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_layer import quality
from readnext.config import Config
from readnext.foldin import FoldInParams

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def grid_search(
    spark: SparkSession, config: Config, data: quality.Ratings, grid: dict[str, list[Any]]
) -> dict[str, Any]:
    """Score every combination of `grid` (keys are [model] settings); returns all rows and the best."""
    split = quality.split_for(data, config)
    catalog = quality.CatalogStats.build(split, None)
    k = config.evaluation.k
    rows = []
    with tempfile.TemporaryDirectory(prefix="readnext-tune-") as folder:
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values, strict=True))
            model = dataclasses.replace(config.model, **settings)
            started = time.monotonic()
            factors = quality.als_item_factors(spark, split, model, Path(folder))
            fit_s = round(time.monotonic() - started, 1)
            scorer = quality.foldin_scorer(factors, FoldInParams.from_config(model))
            lists = [items for items, _ in quality.recommend_lists(scorer, split.validation, k)]
            metrics = quality.list_metrics(lists, split.validation, catalog, k)
            scores = {m: metrics[m] for m in (f"ndcg@{k}", f"recall@{k}", "coverage")}
            rows.append({**settings, **scores, "fit_s": fit_s})
            log.info("grid %s: validation ndcg@%d %.4f, fit %.1f s", settings, k, metrics[f"ndcg@{k}"], fit_s)
    best = max(rows, key=lambda r: r[f"ndcg@{k}"])
    return {"grid": rows, "best": {key: best[key] for key in grid}, "validation_readers": len(split.validation)}
