"""A small grid search over the ALS settings, scored on a validation split, never on the test split.

The master dataset's latest ratings are split per reader into train and test (as every run's
evaluation does), then train again into fit and validation. Each combination is fitted on
`fit` and scored on `validation`; only the best one is then scored on `test`, once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import TYPE_CHECKING, Any

from batch_layer.evaluate import evaluate, split_per_user
from batch_layer.train import collect_factors, fit_als, latest_ratings
from readnext.config import Config

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def _score(train: DataFrame, held: DataFrame, config: Config) -> dict[str, Any]:
    model = fit_als(train, config.model)
    return evaluate(
        train,
        held,
        model,
        collect_factors(model.userFactors),
        collect_factors(model.itemFactors),
        config.batch,
        config.model.seed,
        config.model.implicit,
    )


def grid_search(spark: SparkSession, config: Config, grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Score every combination of `grid` (keys are [model] settings); returns all rows and the best."""
    batch, seed = config.batch, config.model.seed
    train, test = split_per_user(latest_ratings(spark), batch.holdout_fraction, batch.eval_min_ratings, seed)
    fit, validation = split_per_user(train, batch.holdout_fraction, batch.eval_min_ratings, seed + 1)
    k = batch.eval_k
    rows = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        trial = dataclasses.replace(config, model=dataclasses.replace(config.model, **settings))
        als = _score(fit, validation, trial)["als"]
        rows.append({**settings, **{m: als[m] for m in (f"ndcg@{k}", f"recall@{k}", "coverage")}})
        log.info("grid %s: validation ndcg@%d %.4f", settings, k, als[f"ndcg@{k}"])
    best = max(rows, key=lambda r: r[f"ndcg@{k}"])
    settings = {key: best[key] for key in grid}
    chosen = dataclasses.replace(config, model=dataclasses.replace(config.model, **settings))
    return {"grid": rows, "best": settings, "test": _score(train, test, chosen)}
