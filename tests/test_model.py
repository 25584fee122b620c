"""The served model: loaded from the artifact store, swapped when CURRENT moves, fold-in by book id."""

from __future__ import annotations

import dataclasses

import numpy as np

from readnext import artifacts
from readnext.config import load_config
from readnext.foldin import FoldInParams, fold_in
from readnext.model import ModelHolder


def _publish(store, generation, seed):
    rng = np.random.default_rng(seed)
    ids = np.array([10, 20, 30, 40, 50, 60])
    model = dataclasses.asdict(load_config(env={}).model)
    manifest = {"model": model, "stream_offsets": {"ratings-0": 41}}
    artifacts.publish_generation(store, generation, ids, rng.normal(size=(6, 4)).astype(np.float32), manifest)
    artifacts.set_current(store, generation)


def test_holder_loads_and_swaps_generations(tmp_path):
    store = artifacts.LocalStore(tmp_path)
    holder = ModelHolder(store)
    assert holder.refresh() is False and holder.model is None
    _publish(store, "20260101T000000000Z", seed=1)
    assert holder.refresh() is True
    first = holder.model
    assert first.generation == "20260101T000000000Z" and first.stream_offsets == {"ratings-0": 41}
    assert holder.refresh() is False and holder.model is first
    _publish(store, "20260102T000000000Z", seed=2)
    assert holder.refresh() is True and holder.model.generation == "20260102T000000000Z"


def test_fold_in_by_book_id_ignores_books_the_model_does_not_know(tmp_path):
    store = artifacts.LocalStore(tmp_path)
    _publish(store, "20260101T000000000Z", seed=3)
    holder = ModelHolder(store)
    holder.refresh()
    model = holder.model
    vector = model.fold_in({20: 5, 50: 4, 999: 5})
    config = load_config(env={}).model
    expected = fold_in(model.factors, np.array([1, 4]), np.array([5.0, 4.0]), FoldInParams.from_config(config))
    assert np.allclose(vector, expected)
    recs = model.recommend(vector, 10, exclude={20, 50, 999})
    assert [b for b, _ in recs] and not {b for b, _ in recs} & {20, 50}
    assert len(recs) == 4
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)


def test_lists_of_many_readers_equal_each_reader_alone(tmp_path):
    """The speed layer's batched fold-in (one matrix product per chunk) gives what one reader at a time gives."""
    store = artifacts.LocalStore(tmp_path)
    rng = np.random.default_rng(4)
    ids = np.arange(100, 160)
    manifest = {"model": dataclasses.asdict(load_config(env={}).model), "stream_offsets": {}}
    artifacts.publish_generation(
        store, "20260101T000000000Z", ids, rng.normal(size=(60, 8)).astype(np.float32), manifest
    )
    artifacts.set_current(store, "20260101T000000000Z")
    holder = ModelHolder(store)
    holder.refresh()
    model = holder.model
    histories = [
        {int(b): float(rng.integers(1, 6)) for b in rng.choice(ids, size=int(rng.integers(1, 12)), replace=False)}
        for _ in range(7)
    ]
    histories.append({999: 5.0})  # a book the model lacks only: nothing to learn from
    lists = model.lists(histories, 5, chunk=3)  # chunks of 3, 3 and 2 readers
    assert len(lists) == len(histories)
    for history, folded in zip(histories, lists, strict=True):
        vector = model.fold_in(history)
        assert np.allclose(folded.vector, vector, atol=1e-9)
        alone = model.recommend(vector, 5, exclude=history)
        assert [b for b, _ in folded.ranked] == [b for b, _ in alone]
        assert np.allclose([s for _, s in folded.ranked], [s for _, s in alone])
        assert not {b for b, _ in folded.ranked} & set(history)
        assert folded.reasons == model.reasons(history, [b for b, _ in alone])
    assert set(lists[0].reasons) - {-1} <= set(histories[0]), "a reason names a rated book"
    assert lists[-1].reasons == [-1] * 5 and not lists[-1].vector.any()
