"""Datasets: built-ins, deterministic batch order, the factory and its errors."""

from __future__ import annotations

import random
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from bootstrap_repro import datasets
from bootstrap_repro.datasets import Dataset, Digits, Synthetic, _digits
from bootstrap_repro.errors import OptionsError, PluginError, ReproError
from bootstrap_repro.options import DEFAULTS, Options, merge


def make_engine(dataset: dict[str, Any], seed: int = 0, device: str = "cpu") -> SimpleNamespace:
    """A stand-in for the engine: options, device, seed."""
    tree = merge(DEFAULTS, {"dataset": dataset})
    return SimpleNamespace(options=Options(tree), device=torch.device(device), seed=seed,
                           register_hook=lambda name, fn: None, logger=lambda msg: None)


class Range(Dataset):
    """``n`` items whose data is their index (plus optional random draws)."""

    def __init__(self, n: int = 20, draw: bool = False, **kwargs: Any) -> None:
        super().__init__("train", **kwargs)
        self.n, self.draw = n, draw

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {"data": torch.tensor([float(index)]), "index": index}
        if self.draw:
            item["rand"] = torch.tensor([torch.rand(()).item(), random.random(), float(np.random.rand())])
        return item


def order(ds: Dataset, epoch: int) -> list[int]:
    ds.set_epoch(epoch)
    return torch.cat([b["index"] for b in ds.make_batch_loader()]).tolist()


# --------------------------------------------------------------------------- base class
def test_defaults_shuffle_only_the_train_split():
    assert Range().shuffle is True
    ds = Synthetic("val", nb_items=10)
    assert ds.shuffle is False and order(ds, 3) == list(range(10))
    assert (ds.batch_size, ds.nb_threads, ds.pin_memory, ds.drop_last, ds.seed) == (64, 0, False, False, 0)


def test_order_is_a_function_of_seed_plus_epoch_only():
    ds = Range(n=50, batch_size=7, seed=10)
    first = order(ds, 0)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    torch.manual_seed(123)  # the global RNG plays no part
    assert order(ds, 0) == first
    assert order(ds, 1) != first
    assert order(Range(n=50, batch_size=7, seed=11), 0) == order(ds, 1)
    assert order(Range(n=50, batch_size=50, seed=10), 2) == order(ds, 2)  # batch size does not matter


def test_loader_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    order(Range(n=30, nb_threads=0), 0)
    assert torch.equal(torch.get_rng_state(), state)


def test_order_and_worker_seeds_identical_with_two_workers():
    serial = Range(n=40, batch_size=8, seed=4)
    parallel = Range(n=40, batch_size=8, seed=4, nb_threads=2)
    for epoch in (0, 1):
        assert order(parallel, epoch) == order(serial, epoch)
    # workers seed torch, random and numpy from seed + epoch: the same draws every run
    draws = Range(n=16, batch_size=4, seed=4, nb_threads=2, draw=True)
    runs = [torch.cat([b["rand"] for b in draws.make_batch_loader()]) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert len(set(runs[0][:, 1].tolist())) == 16  # each item (and worker) draws differently


def test_drop_last_batch_size_override_and_no_shuffle_override():
    ds = Range(n=10, batch_size=4, drop_last=True)
    assert [len(b["index"]) for b in ds.make_batch_loader()] == [4, 4]
    assert [len(b["index"]) for b in ds.make_batch_loader(batch_size=5)] == [5, 5]
    in_order = ds.make_batch_loader(batch_size=5, shuffle=False)
    assert torch.cat([b["index"] for b in in_order]).tolist() == list(range(10))


def test_sampler_replaces_shuffling_and_gets_the_epoch():
    class Reverse(torch.utils.data.Sampler):
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

        def __iter__(self):
            return iter(range(9, -1, -1))

        def __len__(self) -> int:
            return 10

    ds = Range(n=10, batch_size=3)
    ds.sampler = Reverse()
    assert order(ds, 5) == list(range(9, -1, -1))
    assert ds.sampler.epochs == [5]


def test_subclass_must_implement_len_and_getitem():
    class Incomplete(Dataset):
        pass

    with pytest.raises(TypeError):
        Incomplete("train")


# --------------------------------------------------------------------------- digits
def test_digits_splits_are_fixed_disjoint_and_cover_everything():
    train, val, test = Digits("train"), Digits("val", seed=99), Digits("test")
    assert (len(train), len(val)) == (1437, 360)
    assert torch.equal(val.ids, test.ids)
    assert sorted(torch.cat([train.ids, val.ids]).tolist()) == list(range(1797))
    assert torch.equal(Digits("train", seed=5).ids, train.ids)  # independent of misc.seed
    assert set(train.class_id.tolist()) == set(range(10)) and Digits.nb_classes == 10


def test_digits_items_and_collated_batches():
    ds = Digits("val", batch_size=16)
    item = ds[3]
    assert item["data"].shape == (1, 8, 8) and item["data"].dtype == torch.float32
    assert 0.0 <= float(item["data"].min()) and float(item["data"].max()) <= 1.0
    assert item["class_id"].dtype == torch.long and item["index"] == 3
    assert float(Digits("train").data.max()) == 1.0
    batch = next(iter(ds.make_batch_loader()))
    assert set(batch) == {"data", "class_id", "index"}
    assert batch["data"].shape == (16, 1, 8, 8) and batch["class_id"].shape == (16,)
    assert batch["index"].tolist() == list(range(16))


def test_digits_unknown_split():
    with pytest.raises(OptionsError) as info:
        Digits("trian")
    assert str(info.value) == (
        "split: unknown split 'trian' for dataset 'Digits'; did you mean train? (valid: train, val, test)"
    )


def test_digits_without_scikit_learn(monkeypatch):
    _digits._load.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ReproError) as info:
            Digits("train")
        assert isinstance(info.value, ImportError)
        assert str(info.value) == "dataset.name: digits needs scikit-learn; pip install 'bootstrap-repro[examples]'"
    finally:
        _digits._load.cache_clear()


# --------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_splits_differ():
    a, b = Synthetic("train", nb_items=64, nb_classes=4, dim=8), Synthetic("train", nb_items=64, nb_classes=4, dim=8)
    assert torch.equal(a.data, b.data) and torch.equal(a.class_id, b.class_id)
    val = Synthetic("val", nb_items=64, nb_classes=4, dim=8)
    assert not torch.equal(a.data, val.data)
    assert not torch.equal(Synthetic("train", nb_items=64, dim=8, data_seed=1).data, a.data)
    assert a[0]["data"].shape == (8,) and a.data.dtype == torch.float32
    assert torch.bincount(a.class_id).tolist() == [16, 16, 16, 16]
    # the splits share their class centres: val items are classified by the train class means
    means = torch.stack([a.data[a.class_id == c].mean(0) for c in range(4)])
    nearest = torch.cdist(val.data, means).argmin(1)
    assert (nearest == val.class_id).float().mean() > 0.9


# --------------------------------------------------------------------------- factory
def test_factory_builds_train_and_eval_from_options():
    engine = make_engine({"name": "digits", "batch_size": 32, "nb_threads": 0}, seed=7)
    out = datasets.factory(engine)
    assert set(out) == {"train", "eval"}
    train, ev = out["train"], out["eval"]
    assert (train.split, ev.split) == ("train", "val")
    assert (train.shuffle, ev.shuffle) == (True, False)
    assert train.batch_size == 32 and train.seed == 7 and train.pin_memory is False


def test_factory_empty_split_drops_the_key_and_reads_specific_options():
    engine = make_engine({"name": "synthetic", "eval_split": None, "nb_items": 12, "dim": 3, "seed": 2})
    out = datasets.factory(engine)
    assert list(out) == ["train"]
    ds = out["train"]
    assert (len(ds), ds.dim, ds.data_seed) == (12, 3, 2)


def test_factory_without_engine_uses_the_current_options():
    with Options(merge(DEFAULTS, {"dataset": {"name": "synthetic", "nb_items": 8}, "misc": {"seed": 5}})).activate():
        out = datasets.factory()
    assert len(out["train"]) == 8 and out["train"].seed == 5


def test_factory_unknown_name():
    with pytest.raises(OptionsError) as info:
        datasets.factory(make_engine({"name": "digit"}))
    assert str(info.value) == (
        "dataset.name: unknown name 'digit'; did you mean digits? "
        "(valid: digits, synthetic; or set dataset.import to a module with a factory)"
    )


def test_factory_missing_name():
    with pytest.raises(OptionsError) as info:
        datasets.factory(make_engine({}))
    assert str(info.value) == (
        "dataset.name: missing; set it to one of digits, synthetic or set dataset.import to a module with a factory"
    )


@pytest.mark.parametrize("key", ["train_split", "eval_split"])
def test_factory_unknown_split_names_the_key(key):
    with pytest.raises(OptionsError) as info:
        datasets.factory(make_engine({"name": "synthetic", key: "vall"}))
    assert str(info.value) == (
        f"dataset.{key}: unknown split 'vall' for dataset 'synthetic'; did you mean val? (valid: train, val)"
    )


def test_factory_unknown_option():
    with pytest.raises(OptionsError) as info:
        datasets.factory(make_engine({"name": "synthetic", "nb_item": 3}))
    assert str(info.value) == (
        "dataset.nb_item: unknown option for dataset 'synthetic'; did you mean dataset.nb_items? "
        "(valid: name, import, dir, train_split, eval_split, nb_threads, batch_size, nb_items, nb_classes, "
        "dim, noise, seed)"
    )


def test_factory_import_plugin(plugin):
    name = plugin(
        "from bootstrap_repro.datasets import Synthetic\n"
        "def factory(engine):\n"
        "    bs = engine.options['dataset.batch_size']\n"
        "    return {'train': Synthetic('train', nb_items=6, batch_size=bs, seed=engine.seed)}\n"
    )
    out = datasets.factory(make_engine({"import": name, "batch_size": 3}, seed=4))
    assert list(out) == ["train"] and out["train"].batch_size == 3 and out["train"].seed == 4


def test_factory_import_errors(plugin):
    with pytest.raises(PluginError) as info:
        datasets.factory(make_engine({"import": "no_such_module_xyz"}))
    assert str(info.value).startswith("dataset.import: module 'no_such_module_xyz' not found")

    name = plugin("x = 1\n")
    with pytest.raises(PluginError) as info:
        datasets.factory(make_engine({"import": name}))
    assert str(info.value).startswith(
        f"dataset.import: module '{name}' has no callable 'factory'; define `def factory(...)`"
    )

    name = plugin("def factory(engine):\n    return [1]\n")
    with pytest.raises(PluginError) as info:
        datasets.factory(make_engine({"import": name}))
    assert str(info.value) == (
        f"dataset.import: {name}.factory(engine) returned list; expected a dict like "
        "{'train': dataset, 'eval': dataset}"
    )
