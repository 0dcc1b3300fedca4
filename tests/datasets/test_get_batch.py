"""Batches read whole (``Dataset.get_collated_batch``): the same batches as item by item, only faster.

The built-in in-memory datasets index their tensors once per batch instead of once per item.
What must not change: the order, the worker seeds, the values (bitwise, dtype, shape), a
subclass's own ``__getitem__``, a custom ``collate_fn``, and any other loader over the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from bootstrap_repro.datasets import Dataset
from bootstrap_repro.datasets._digits import Digits
from bootstrap_repro.datasets._synthetic import Synthetic


def item_by_item(items: list[Any]) -> Any:
    """A ``collate_fn`` that is not the default one: the loader then reads item by item."""
    return default_collate(items)


def read(ds: Dataset, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out += list(ds.make_batch_loader())
    return out


def assert_same_batches(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k].dtype == w[k].dtype and g[k].shape == w[k].shape, k
            assert torch.equal(g[k], w[k]), k


def synthetic(**kw: Any) -> Synthetic:
    return Synthetic("train", nb_items=50, nb_classes=3, dim=5, batch_size=8, seed=4, **kw)


def digits(**kw: Any) -> Digits:
    return Digits("train", batch_size=33, seed=4, **kw)


@pytest.mark.parametrize("make", [synthetic, digits], ids=["synthetic", "digits"])
@pytest.mark.parametrize("kw", [{}, {"shuffle": False}, {"drop_last": True}, {"nb_threads": 2}],
                         ids=["shuffled", "in-order", "drop-last", "2-workers"])
def test_whole_batches_equal_item_by_item(make, kw):
    whole = make(**kw)
    assert whole._reads_batches()
    items = make(**kw)
    items.collate_fn = item_by_item
    assert not items._reads_batches()
    assert_same_batches(read(whole), read(items))


def test_the_order_is_the_one_of_a_plain_seeded_loader():
    """Experiment dirs made before batches were read whole resume on the same data order."""
    ds = synthetic()
    for epoch in range(3):
        ds.set_epoch(epoch)
        want = list(DataLoader(ds, batch_size=8, shuffle=True, generator=ds.make_generator(),
                               collate_fn=item_by_item))
        assert_same_batches(list(ds.make_batch_loader()), want)


def test_a_distributed_sampler_gives_its_share():
    ds = synthetic()
    ds.sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=9)
    ds.set_epoch(1)
    got = torch.cat([b["index"] for b in ds.make_batch_loader()]).tolist()
    ds.sampler.set_epoch(1)
    assert got == list(ds.sampler)


class Noisy(Synthetic):
    """A plugin's subclass that changes items and leaves ``get_collated_batch`` alone."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        return {**item, "data": item["data"] + 100.0, "flag": 1}


class Both(Synthetic):
    """A subclass that changes items and batches alike."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "flag": 1}

    def get_collated_batch(self, indices: list[int]) -> dict[str, Any]:
        return {**super().get_collated_batch(indices), "flag": torch.ones(len(indices), dtype=torch.int64)}


def test_a_subclass_that_overrides_getitem_alone_is_read_item_by_item():
    ds = Noisy("train", nb_items=20, nb_classes=3, dim=5, batch_size=8)
    assert not ds._reads_batches()
    batch = next(iter(ds.make_batch_loader()))
    assert batch["flag"].tolist() == [1] * 8 and bool((batch["data"] > 50).all())


def test_a_subclass_that_overrides_both_is_read_whole():
    ds = Both("train", nb_items=20, nb_classes=3, dim=5, batch_size=8)
    assert ds._reads_batches()
    items = Both("train", nb_items=20, nb_classes=3, dim=5, batch_size=8)
    items.collate_fn = item_by_item
    assert_same_batches(read(ds), read(items))


def test_a_custom_collate_fn_still_gets_the_items():
    seen: list[int] = []

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        seen.append(len(items))
        return default_collate(items)

    ds = synthetic()
    ds.collate_fn = collate
    list(ds.make_batch_loader())
    assert seen == [8] * 6 + [2]


def test_another_loader_over_the_dataset_gets_items():
    """``DataLoader(dataset, batch_size=...)`` written by hand (or by seed code) collates items itself."""
    ds = synthetic()
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["data"].shape == (4, 5)
    items = ds.__getitems__([3, 1])  # a plain list of indices: a list of items
    assert isinstance(items, list) and [it["index"] for it in items] == [3, 1]
    assert all(torch.equal(a["data"], ds[i]["data"]) for a, i in zip(items, [3, 1]))


def test_turned_off_on_one_dataset_reads_items():
    ds = synthetic()
    ds.get_collated_batch = None  # type: ignore[assignment]
    assert not ds._reads_batches()
    items = synthetic()
    items.collate_fn = item_by_item
    assert_same_batches(read(ds), read(items))


def test_a_getitem_patched_onto_the_class_later_is_used(monkeypatch):
    """A test or plugin that patches ``Synthetic.__getitem__`` gets its items in the batches too."""
    original = Synthetic.__getitem__
    monkeypatch.setattr(Synthetic, "__getitem__", lambda self, i: {**original(self, i), "data": torch.zeros(5)})
    ds = synthetic()
    assert not ds._reads_batches()
    assert all(bool((b["data"] == 0).all()) for b in ds.make_batch_loader())


class BatchMixin:
    """A mixin that is not a Dataset: its get_collated_batch was not written with any __getitem__."""

    def get_collated_batch(self, indices: list[int]) -> dict[str, Any]:
        return {"data": torch.full((len(indices), 5), -1.0)}


class Mixed(BatchMixin, Synthetic):
    pass


def test_a_get_collated_batch_from_a_plain_mixin_is_not_trusted():
    ds = Mixed("train", nb_items=20, nb_classes=3, dim=5, batch_size=8)
    assert not ds._reads_batches()
    assert all(bool((b["data"] != -1.0).all()) for b in ds.make_batch_loader())


@pytest.mark.parametrize("indices", [[3, 1, 2, 3], [-1, 5, -100], [], [np.int64(4), 7], [torch.tensor(9), 0]])
def test_gather_equals_collating_the_indexed_rows(indices):
    from bootstrap_repro.datasets import gather

    x, y = torch.randn(100, 3, 2), torch.arange(100) * 7
    ids, xs, ys = gather(indices, x, y)
    ref = default_collate([int(i) for i in indices]) if indices else torch.empty(0, dtype=torch.int64)
    assert ids.dtype == torch.int64 and torch.equal(ids, ref)
    assert torch.equal(xs, torch.stack([x[int(i)] for i in indices]) if indices else x[:0])
    assert torch.equal(ys, torch.stack([y[int(i)] for i in indices]) if indices else y[:0])
