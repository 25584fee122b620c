"""Train Spark MLlib ALS on the master dataset's latest ratings (readnext.master_dataset.latest_ratings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from readnext.config import ModelConfig

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class Factors:
    """One side of a trained model on the driver: ids and their factor rows (float32)."""

    ids: np.ndarray
    vectors: np.ndarray

    def row_of(self) -> dict[int, int]:
        return {int(i): k for k, i in enumerate(self.ids)}


def fit_als(ratings: DataFrame, model: ModelConfig, rank: int | None = None, reg: float | None = None) -> ALSModel:
    """Fit ALS on (user_id, book_id, rating) star ratings with the configured feedback mapping."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    value = F.col("rating").cast("float")
    if model.implicit:
        value = value - F.lit(float(model.rating_offset))
    frame = ratings.select("user_id", "book_id", value.alias("value"))
    blocks = model.blocks or ratings.sparkSession.sparkContext.defaultParallelism
    als = ALS(
        rank=rank or model.rank,
        maxIter=model.iterations,
        regParam=model.reg if reg is None else reg,
        implicitPrefs=model.implicit,
        alpha=model.alpha,
        userCol="user_id",
        itemCol="book_id",
        ratingCol="value",
        seed=model.seed,
        checkpointInterval=model.checkpoint_interval,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        coldStartStrategy="drop",
    )
    return als.fit(frame)


def collect_factors(frame: DataFrame) -> Factors:
    """Bring a factor DataFrame (id, features) to the driver, sorted by id."""
    rows = sorted((r.id, r.features) for r in frame.collect())
    if not rows:
        return Factors(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    ids, vectors = zip(*rows, strict=True)
    return Factors(np.array(ids, dtype=np.int64), np.array(vectors, dtype=np.float32))
