"""The seed's model parts: per-mode criterion/metric factories, ``DefaultModel``/``SimpleModel(engine)``,
``[B, 1]`` class targets, and ``Dataset(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from bootstrap_repro import datasets, models
from bootstrap_repro.datasets import Dataset
from bootstrap_repro.engines import Engine
from bootstrap_repro.logger import Logger
from bootstrap_repro.models import BCEWithLogitsLoss, CrossEntropyLoss, DefaultModel, Model, NLLLoss, SimpleModel
from bootstrap_repro.options import Options
from bootstrap_repro.run import run

#: A metric module in the seed's style: ``factory(engine, mode)``, one instance per mode, each
#: counting the items it saw and logging the count from its own ``<mode>_on_end_epoch`` hook.
SEED_METRIC = '''
import torch
from torch import nn

CALLS = []

class Count(nn.Module):
    def __init__(self, engine, mode):
        super().__init__()
        self.engine, self.mode, self.nb_items = engine, mode, 0
        engine.register_hook(f"{mode}_on_end_epoch", self.end_epoch)

    def forward(self, cri_out, net_out, batch):
        self.nb_items += len(batch["class_id"])
        return {"acc": (net_out.argmax(1) == batch["class_id"]).float().mean() * 100}

    def end_epoch(self):
        self.engine.logger.log_value(f"{self.mode}_epoch.nb_items", self.nb_items)
        self.nb_items = 0

def factory(engine=None, mode=None):
    CALLS.append(mode)
    return Count(engine, mode)
'''

SEED_CRITERION = '''
import torch.nn.functional as F
from torch import nn

CALLS = []

class Nll(nn.Module):
    def forward(self, net_out, batch):
        return {"loss": F.nll_loss(net_out, batch["class_id"].squeeze(1) if batch["class_id"].dim() == 2 else batch["class_id"])}

def factory(engine, mode):
    CALLS.append(mode)
    return Nll()
'''


def engine_for(tiny_options: Any, changes: dict[str, Any] | None = None) -> Engine:
    engine = Engine(tiny_options(changes), Logger(activate=False, echo=False))
    engine.dataset = datasets.factory(engine)
    return engine


# --------------------------------------------------------------------------- per-mode factories
def test_seed_factories_are_called_per_mode_and_their_hooks_fire(tiny_options, plugin):
    import importlib

    metric, criterion = plugin(SEED_METRIC), plugin(SEED_CRITERION)
    res = run(tiny_options({"model": {"metric": {"import": metric}, "criterion": {"import": criterion}},
                            "engine": {"saving_criteria": ["acc:max"]}}), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert importlib.import_module(metric).CALLS == ["train", "eval"]
    assert importlib.import_module(criterion).CALLS == ["train", "eval"]
    model = res.engine.model
    assert model.metrics["train"] is not model.metrics["eval"]
    assert model.criterions["train"] is not model.criterions["eval"]
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    # each instance saw its own mode's 48 items per epoch, and nothing else (no pre-run probe either)
    assert logs["train_epoch.nb_items"] == [48, 48] and logs["eval_epoch.nb_items"] == [48, 48]


def test_a_one_argument_factory_serves_every_mode(tiny_options, plugin):
    name = plugin("from torch import nn\nCALLS = []\n"
                  "class M(nn.Module):\n    def forward(self, c, n, b):\n        return {}\n"
                  "def factory(engine):\n    CALLS.append(engine)\n    return M()\n")
    engine = engine_for(tiny_options, {"model": {"metric": {"import": name}}})
    model = models.factory(engine)
    assert model.metrics["train"] is model.metrics["eval"]
    assert __import__(name).CALLS == [engine]


def test_factories_take_the_modes_of_the_dataset(tiny_options, plugin):
    name = plugin(SEED_METRIC)
    engine = engine_for(tiny_options, {"model": {"metric": {"import": name}}})
    engine.dataset["test"] = engine.dataset["eval"]
    model = models.factory(engine)
    assert sorted(model.metrics) == ["eval", "test", "train"] and __import__(name).CALLS == ["train", "eval", "test"]
    engine.model = model
    engine.eval_epoch(model, engine.dataset["test"], 0, mode="test")  # its own instance and hook
    assert engine.logger.values["test_epoch.nb_items"] == [48]
    assert model.metrics["eval"].nb_items == 0


def test_builtin_parts_are_one_instance_per_mode(tiny_options):
    model = models.factory(engine_for(tiny_options))
    assert type(model.criterions["train"]) is type(model.criterions["eval"]) is NLLLoss
    assert model.criterions["train"] is not model.criterions["eval"]
    assert model.metrics["train"] is not model.metrics["eval"]
    assert models.criterion_factory(engine_for(tiny_options), "eval") is not None  # the seed's (engine, mode)


def test_an_eval_only_model_loads_a_training_checkpoint():
    net = torch.nn.Linear(3, 1)
    trained = Model(net, criterions={"train": BCEWithLogitsLoss(2.0), "eval": BCEWithLogitsLoss(2.0)})
    eval_only = Model(torch.nn.Linear(3, 1), criterions={"eval": BCEWithLogitsLoss(2.0)})
    eval_only.load_state_dict(trained.state_dict())
    assert torch.equal(eval_only.network.weight, net.weight)
    with pytest.raises(RuntimeError, match="Missing key"):
        trained.load_state_dict(eval_only.state_dict())


# --------------------------------------------------------------------------- models
def test_simple_model_from_an_engine_as_in_the_seed(tiny_options):
    engine = engine_for(tiny_options)
    model = SimpleModel(engine)
    assert isinstance(model.network, models.MLP) and sorted(model.criterions) == ["eval", "train"]
    assert model.mode == "eval" and not model.training  # the seed's models start in eval mode
    batch = next(iter(engine.dataset["train"].make_batch_loader()))
    assert {"loss", "acctop1", "acctop2", "net_out"} <= set(model.train()(batch)) and model.mode == "train"
    assert SimpleModel(engine=engine).network is not None


def test_default_model_and_its_seed_overrides(tiny_options):
    engine = engine_for(tiny_options)

    class Mine(DefaultModel):
        def _init_network(self, engine: Any = None) -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LogSoftmax(1))

        def forward(self, batch: Any) -> dict[str, Any]:
            batch = self.prepare_batch(batch)
            return {"loss": self.criterions[self.mode](self.network(batch["data"]), batch)["loss"]}

    model = Mine(engine)
    batch = next(iter(engine.dataset["train"].make_batch_loader()))
    assert model.train()(batch)["loss"].requires_grad
    assert isinstance(DefaultModel(engine).network, models.MLP)


def test_model_with_an_engine_builds_nothing_as_in_the_seed(tiny_options):
    engine = engine_for(tiny_options)

    class Hand(Model):
        def __init__(self, engine: Any = None) -> None:
            super().__init__(engine)
            self.network = torch.nn.Linear(8, 4)
            self.criterions = {"train": CrossEntropyLoss(), "eval": CrossEntropyLoss()}

    model = Hand(engine)
    assert isinstance(model.network, torch.nn.Linear) and set(model.criterions) == {"train", "eval"}
    assert "criterion_train" in dict(model.named_children())  # assigned parts are submodules
    seed_order = Model(engine, None, None, torch.nn.Linear(2, 2), {"eval": NLLLoss()}, {})
    assert isinstance(seed_order.network, torch.nn.Linear) and list(seed_order.criterions) == ["eval"]


def test_seed_class_targets_of_shape_b_by_1():
    torch.manual_seed(0)
    scores = F.log_softmax(torch.randn(6, 4), 1)
    target = torch.tensor([0, 3, 1, 2, 2, 0])
    for crit in (NLLLoss(), CrossEntropyLoss()):
        flat = crit(scores, {"class_id": target})["loss"]
        assert torch.equal(crit(scores, {"class_id": target.view(6, 1)})["loss"], flat)
    assert models.accuracy(scores, target.view(6, 1), [1])[0] == models.accuracy(scores, target, [1])[0]


# --------------------------------------------------------------------------- datasets
class SeedStyle(Dataset):
    """A dataset written for bootstrap.pytorch: positional arguments in the seed's order."""

    def __init__(self, dir_data: str, split: str = "train", batch_size: int = 4, shuffle: bool = False,
                 pin_memory: bool = False, nb_threads: int = 4) -> None:
        super().__init__(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"data": torch.tensor([float(index)]), "class_id": torch.tensor([index % 2])}


class Native(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"index": index}


def test_dataset_in_the_seed_argument_order():
    ds = SeedStyle("data/toy", "val", 3, True, False, 0)
    assert (ds.dir_data, ds.split, ds.batch_size, ds.shuffle, ds.pin_memory, ds.nb_threads) == (
        "data/toy", "val", 3, True, False, 0)
    batches = list(ds.make_batch_loader())
    assert [len(b["data"]) for b in batches] == [3, 3, 3, 1] and batches[0]["class_id"].shape == (3, 1)


@pytest.mark.parametrize("args, kwargs, expected", [
    (("data/toy",), {}, ("data/toy", "train", 4, False, 4)),  # the seed's defaults
    (("data/toy",), {"split": "val", "nb_threads": 0}, ("data/toy", "val", 4, False, 0)),
    (("toy", "test", 8), {}, ("toy", "test", 8, False, 4)),
    ((), {"dir_data": "toy", "batch_size": 2}, ("toy", "train", 2, False, 4)),
    (("train",), {}, (None, "train", 64, True, 0)),  # native: Dataset(split, ...)
    (("val", 16, 2), {"dir_data": "d"}, ("d", "val", 16, False, 2)),
    ((), {"split": "train", "dir_data": "d", "seed": 3}, ("d", "train", 64, True, 0)),
])
def test_dataset_argument_orders(args, kwargs, expected):
    ds = Native(*args, **kwargs)
    assert (ds.dir_data, ds.split, ds.batch_size, ds.shuffle, ds.nb_threads) == expected


def test_a_seed_dataset_shuffles_with_the_run_seed():
    with Options({"misc": {"seed": 11}}).activate():
        assert Native("data/toy").seed == 11
    assert Native("data/toy").seed == 0 and Native("train", seed=5).seed == 5


def test_bad_dataset_arguments_name_both_orders():
    with pytest.raises(TypeError) as info:
        Native("train", 16, 0, None, False, False, 0, None, "extra")
    assert str(info.value) == (
        "Native(): too many positional arguments; expected Dataset(split, batch_size=64, nb_threads=0, shuffle=None, "
        "pin_memory=False, drop_last=False, seed=0, dir_data=None) or the seed's Dataset(dir_data, split='train', "
        "batch_size=4, shuffle=False, pin_memory=False, nb_threads=4)")
