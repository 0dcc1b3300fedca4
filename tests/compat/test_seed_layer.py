"""``bootstrap.datasets`` / ``models`` / ``engines`` of the compatibility layer: the seed's pieces on ours."""

from __future__ import annotations

import pytest
import torch
from bootstrap.datasets import transforms as btf
from bootstrap.datasets.dataset import Dataset, ListDatasets
from bootstrap.engines.engine import Engine
from bootstrap.engines.logger import LoggerEngine
from bootstrap.lib.utils import merge_dictionaries, update_values
from bootstrap.models.model import DefaultModel, SimpleModel
from bootstrap.models.networks.data_parallel import DataParallel
from torch import nn

from bootstrap_repro import datasets as native_datasets
from bootstrap_repro import engines as native_engines
from bootstrap_repro import models as native_models
from bootstrap_repro.logger import Logger as NativeLogger


class Items(Dataset):
    def __init__(self, n: int, **kwargs):
        super().__init__("data/items", nb_threads=0, **kwargs)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"data": torch.full((2,), float(i)), "index": i, "name": f"item{i}"}


def test_seed_collate_stacks_tensors_and_keeps_other_lists():
    ds = Items(5, split="val", batch_size=2)
    assert isinstance(ds, native_datasets.Dataset) and ds.dir_data == "data/items" and ds.shuffle is False
    batch = next(iter(ds.make_batch_loader()))
    assert batch["data"].shape == (2, 2) and batch["index"] == [0, 1] and batch["name"] == ["item0", "item1"]


def test_list_datasets_chains_items():
    both = ListDatasets([Items(2, split="val"), Items(3, split="val")], split="val", batch_size=5, nb_threads=0)
    assert len(both) == 5 and [both[i]["index"] for i in range(5)] == [0, 1, 0, 1, 2]
    assert next(iter(both.make_batch_loader()))["data"].shape == (5, 2)


def test_transforms_behave_as_the_seeds():
    batch = [{"x": torch.ones(2), "y": torch.ones(1, 3)}, {"x": torch.ones(3), "y": torch.ones(2, 1)}]
    dl = btf.ListDictsToDictLists()(batch)
    padded = btf.PadTensors(value=-1)(dl)
    assert padded["x"][0].tolist() == [1, 1, -1] and padded["y"][0].shape == (2, 3)
    stacked = btf.Compose([btf.PadTensors(), btf.StackTensors(avoid_keys=["y"])])(dl)
    assert stacked["x"].shape == (2, 3) and isinstance(stacked["y"], list)
    cat = btf.CatTensors(use_keys=["y"])({"y": [torch.ones(1, 3), torch.ones(2, 3)], "z": 1})
    assert cat["y"].shape == (3, 3) and cat["batch_id"].tolist() == [0, 1, 1] and cat["z"] == 1
    assert btf.SortByKey()({"lengths": [1, 3, 2], "w": ["a", "b", "c"]})["w"] == ["b", "c", "a"]
    t = torch.ones(2, requires_grad=True) * 2
    assert not btf.ToDetach()({"t": t})["t"].requires_grad and btf.ToCpu()([t])[0].device.type == "cpu"
    assert btf.ToVariable(volatile=True)(t).requires_grad is False


def test_utils_merge_and_update():
    d = {"a": {"b": 1, "c": 2}}
    merge_dictionaries(d, {"a": {"b": 3}, "e": 4})
    assert d == {"a": {"b": 3, "c": 2}, "e": 4}
    assert update_values({"a": {"b": None, "c": 5}}, d) == {"a": {"b": 3, "c": 5}, "e": 4}


def test_data_parallel_forwards_attributes_and_state_dict():
    net = nn.Linear(2, 1)
    net.my_attr = "kept"
    wrapped = DataParallel(net)
    assert wrapped.my_attr == "kept" and list(wrapped.state_dict()) == ["weight", "bias"]
    with pytest.raises(AttributeError):
        _ = wrapped.nope


def test_models_and_engines_are_bootstrap_repros(tiny_options):
    assert DefaultModel is native_models.DefaultModel and SimpleModel is native_models.SimpleModel
    assert LoggerEngine is Engine and issubclass(Engine, native_engines.Engine)
    opt = tiny_options()
    with opt.activate(), NativeLogger(activate=False, echo=False).activate():
        engine = Engine()
        assert engine.options is opt and engine.device.type in ("cpu", "cuda")
