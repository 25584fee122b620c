"""The served model: the current generation's book factors in memory, with fold-in and top-N by book id.

The speed and serving layers hold one `ModelHolder` each; `refresh()` swaps in a new generation
when the artifact store's CURRENT pointer moves, without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from readnext import artifacts
from readnext.config import ModelConfig
from readnext.foldin import FoldInParams, fold_in, gramian, recommend, scores, step, strongest, top_n


@dataclass(frozen=True)
class ReaderList:
    """A folded-in reader: their vector, top-N (book id, score) best first, and each top-N book's reason."""

    vector: np.ndarray
    ranked: list[tuple[int, float]]
    reasons: list[int]

    def reason_of(self) -> dict[int, int]:
        return {b: r for (b, _), r in zip(self.ranked, self.reasons, strict=True)}


@dataclass(frozen=True)
class ServedModel:
    """One generation's book factors, held in float32 as ALS learnt them: a fold-in takes the rated
    books' rows to float64 for its normal equations, and scoring multiplies in float32
    (`readnext.foldin.scores`), so no request converts the whole matrix."""

    generation: str
    book_ids: np.ndarray
    factors: np.ndarray
    params: FoldInParams
    manifest: dict[str, Any]
    row_of: dict[int, int] = field(repr=False)
    yty: np.ndarray | None = field(repr=False)

    @classmethod
    def build(cls, generation: str, book_ids: np.ndarray, factors: np.ndarray, manifest: dict[str, Any]) -> ServedModel:
        params = FoldInParams.from_config(ModelConfig(**manifest["model"]))
        return cls(
            generation=generation,
            book_ids=np.asarray(book_ids, dtype=np.int64),
            factors=np.ascontiguousarray(factors, dtype=np.float32),
            params=params,
            manifest=manifest,
            row_of={int(b): k for k, b in enumerate(book_ids)},
            yty=gramian(factors) if params.implicit else None,
        )

    @property
    def stream_offsets(self) -> dict[str, int]:
        """Highest Kafka offset per `<topic>-<partition>` that this generation learnt from."""
        return self.manifest.get("stream_offsets", {})

    def fold_in(self, ratings: Mapping[int, float]) -> np.ndarray:
        """The reader's vector from {book id: stars}; books the model does not know are left out."""
        known = [(self.row_of[b], r) for b, r in ratings.items() if b in self.row_of]
        rows = np.array([k for k, _ in known], dtype=np.int64)
        stars = np.array([r for _, r in known], dtype=np.float64)
        return fold_in(self.factors, rows, stars, self.params, self.yty)

    def estimates(self, vector: np.ndarray, book_ids: list[int]) -> list[float | None]:
        """The model's predicted preference of the reader `vector` for each book (None: a book it lacks)."""
        return [float(self.factors[self.row_of[b]] @ vector) if b in self.row_of else None for b in book_ids]

    def reasons(self, ratings: Mapping[int, float], book_ids: list[int]) -> list[int]:
        """Per book, the rated book that adds most to its score (-1: none does, or the model lacks it)."""
        known = [b for b in ratings if b in self.row_of]
        rows = np.array([self.row_of[b] for b in known], dtype=np.int64)
        targets = np.array([self.row_of.get(b, -1) for b in book_ids], dtype=np.int64)
        best = strongest(
            self.factors, rows, np.array([ratings[b] for b in known]), self.params, np.maximum(targets, 0), self.yty
        )
        return [known[j] if j >= 0 and t >= 0 else -1 for j, t in zip(best.tolist(), targets.tolist(), strict=True)]

    def lists(self, histories: Sequence[Mapping[int, float]], n: int, chunk: int = 256) -> list[ReaderList]:
        """Fold in several readers ({book id: stars} each) and make their top-N, rated books excluded, with reasons.

        One factorisation per reader gives the vector and the reasons (`readnext.foldin.Step`), and
        one matrix product scores `chunk` readers: the book factors are read once per chunk, not
        once per reader.
        """
        return [one for at in range(0, len(histories), chunk) for one in self._lists(histories[at : at + chunk], n)]

    def _lists(self, histories: Sequence[Mapping[int, float]], n: int) -> list[ReaderList]:
        steps, rated = [], []
        for ratings in histories:
            known = [b for b in ratings if b in self.row_of]
            rows = np.array([self.row_of[b] for b in known], dtype=np.int64)
            steps.append(step(self.factors, rows, np.array([ratings[b] for b in known]), self.params, self.yty))
            rated.append((known, rows))
        ranked = scores(np.stack([s.vector for s in steps]), self.factors)  # a reader's scores in one contiguous row
        out = []
        for k, (solved, (known, rows)) in enumerate(zip(steps, rated, strict=True)):
            idx, best = top_n(ranked[k], n, rows)
            why = solved.strongest(self.factors, idx)
            out.append(
                ReaderList(
                    solved.vector,
                    list(zip(self.book_ids[idx].tolist(), best.tolist(), strict=True)),
                    [known[j] if j >= 0 else -1 for j in why.tolist()],
                )
            )
        return out

    def recommend(self, vector: np.ndarray, n: int, exclude: Mapping[int, Any] | set[int]) -> list[tuple[int, float]]:
        """Top-N (book id, score), best first, no book of `exclude`."""
        rows = np.array([self.row_of[b] for b in exclude if b in self.row_of], dtype=np.int64)
        idx, best = recommend(vector, self.factors, n, rows)
        return [(int(self.book_ids[i]), float(s)) for i, s in zip(idx, best, strict=True)]


class ModelHolder:
    """The current generation, reloaded from the artifact store when its CURRENT pointer moves."""

    def __init__(self, store: artifacts.ArtifactStore) -> None:
        self.store = store
        self._model: ServedModel | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> ServedModel | None:
        return self._model

    def refresh(self) -> bool:
        """Load the current generation if it changed; True when a new one was swapped in."""
        with self._lock:
            model = self.newer()
            if model is not None:
                self._model = model
            return model is not None

    def newer(self) -> ServedModel | None:
        """The current generation, loaded, when it is not the one held; None otherwise. Nothing is swapped.

        With `swap`, a caller loads a generation before it takes the lock its readers wait on
        (speed_layer/stream.py).
        """
        current = artifacts.current_generation(self.store)
        if current is None or (self._model is not None and self._model.generation == current):
            return None
        ids, factors, manifest = artifacts.load_generation(self.store, current)
        return ServedModel.build(current, ids, factors, manifest)

    def swap(self, model: ServedModel) -> None:
        """Serve `model` (from `newer`) from now on."""
        self._model = model
