"""Option names the released bootstrap.pytorch accepted: torch scheduler and loss class names, and the
keys of its ``options/abstract.yaml``."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bootstrap_repro import models, optimizers
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.models import BCEWithLogitsLoss, TorchLoss
from bootstrap_repro.options import DEFAULTS, Options, merge
from bootstrap_repro.run import run
from conftest import TINY, write_options


def stand_in(tree: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(options=Options(merge(DEFAULTS, tree)), device=torch.device("cpu"), seed=0,
                           register_hook=lambda name, fn: None, logger=lambda *a, **k: None)


def scheduler(sopt: dict[str, Any]) -> Any:
    model = torch.nn.Linear(2, 2)
    opt = optimizers.factory(model, stand_in({"optimizer": {"name": "sgd", "lr": 0.1, "lr_scheduler": sopt},
                                              "engine": {"nb_epochs": 4}}))
    return opt.scheduler


# --------------------------------------------------------------------------- lr_scheduler.name
@pytest.mark.parametrize("sopt, cls", [
    ({"name": "StepLR", "step_size": 2, "gamma": 0.5, "last_epoch": -1}, torch.optim.lr_scheduler.StepLR),
    ({"name": "CosineAnnealingLR", "T_max": 3}, torch.optim.lr_scheduler.CosineAnnealingLR),
    ({"name": "MultiStepLR", "milestones": [1, 3]}, torch.optim.lr_scheduler.MultiStepLR),
    ({"name": "ExponentialLR", "gamma": 0.9}, torch.optim.lr_scheduler.ExponentialLR),
    ({"name": "step", "step_size": 1}, torch.optim.lr_scheduler.StepLR),
])
def test_any_torch_scheduler_class_name(sopt, cls):
    assert type(scheduler(sopt)) is cls


def test_cosine_by_class_name_defaults_t_max_to_the_epochs():
    assert scheduler({"name": "CosineAnnealingLR"}).T_max == 4


@pytest.mark.parametrize("sopt, expected", [
    ({"name": "StepLr", "step_size": 1},
     "optimizer.lr_scheduler.name: unknown name 'StepLr'; did you mean StepLR? "
     "(valid: cosine, step, or a torch.optim.lr_scheduler class name such as StepLR)"),
    ({"name": "ReduceLROnPlateau"},
     "optimizer.lr_scheduler.name: ReduceLROnPlateau steps on a metric value, which the per-epoch scheduler step "
     "does not pass; use e.g. StepLR, or step it in a hook (optimizer.import)"),
    ({"name": "LambdaLR"},
     "optimizer.lr_scheduler.lr_lambda: missing; lr_scheduler 'LambdaLR' needs it (required: lr_lambda)"),
    ({"name": "StepLR"},
     "optimizer.lr_scheduler.step_size: missing; the step scheduler needs it (epochs between decays), "
     "e.g. step_size: 10"),
    ({"name": "StepLR", "step_size": 1, "last_epoch": 3},
     "optimizer.lr_scheduler.last_epoch: only -1 (a new schedule) is supported, got 3; resume a run with "
     "--exp.resume to continue its schedule"),
    ({"name": "MultiStepLR", "milestone": [1]},
     "optimizer.lr_scheduler.milestone: not an option of lr_scheduler 'MultiStepLR'; did you mean "
     "optimizer.lr_scheduler.milestones? (valid: milestones, gamma)"),
])
def test_scheduler_name_errors(sopt, expected):
    with pytest.raises(OptionsError) as info:
        scheduler(sopt)
    assert str(info.value) == expected


# --------------------------------------------------------------------------- criterion.name
def criterion(copt: dict[str, Any]) -> Any:
    return models.criterion_factory(stand_in({"model": {"network": {"name": "mlp"}, "criterion": copt}}), "train")


def test_torch_loss_class_names():
    assert type(criterion({"name": "BCEWithLogitsLoss"})) is BCEWithLogitsLoss  # the seed's class of that name
    ce = criterion({"name": "CrossEntropyLoss", "label_smoothing": 0.1})
    assert isinstance(ce, TorchLoss) and ce.loss.label_smoothing == 0.1
    scores, target = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(scores, target, label_smoothing=0.1)
    assert torch.allclose(ce(scores, {"class_id": target.view(5, 1)})["loss"], expected)  # the seed's [B, 1]
    mse = criterion({"name": "MSELoss"})
    out = torch.randn(4, 1)
    assert torch.allclose(mse(out, {"target": torch.arange(4)})["loss"], ((out.view(4) - torch.arange(4)) ** 2).mean())
    weighted = criterion({"name": "NLLLoss", "weight": [1.0, 2.0, 0.5]})
    assert torch.equal(weighted.loss.weight, torch.tensor([1.0, 2.0, 0.5]))


@pytest.mark.parametrize("name, expected", [
    ("MSELos", "model.criterion.name: unknown name 'MSELos'; did you mean MSELoss? "
               "(valid: bce, cross_entropy, nll; or set model.criterion.import to a module with a factory)"),
    ("TripletMarginLoss", "model.criterion.name: torch.nn.TripletMarginLoss takes (anchor, positive, negative), "
                          "not (net_out, target); wrap it in a criterion module and set model.criterion.import"),
])
def test_torch_loss_name_errors(name, expected):
    with pytest.raises(OptionsError) as info:
        criterion({"name": name})
    assert str(info.value) == expected


def test_a_run_with_a_torch_loss_and_scheduler_by_class_name(tiny_options):
    res = run(tiny_options({"model": {"criterion": {"name": "CrossEntropyLoss"}},
                            "optimizer": {"lr_scheduler": {"name": "StepLR", "step_size": 1, "gamma": 0.5}}}),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["train_epoch.lr"] == [0.1, 0.05]


# --------------------------------------------------------------------------- abstract.yaml
#: The keys of bootstrap.pytorch's options/abstract.yaml (both releases: engine.debug, then misc.debug,
#: misc.profile and views.{name, plot_width, items}), on the tiny dataset and network.
ABSTRACT = {
    "exp": {"resume": None},
    "dataset": {"dir": "data/abstract", "train_split": "train", "eval_split": "val", "nb_threads": 0},
    "model": {"name": "simple", "criterion": {"name": "cross_entropy"}, "metric": {"name": "accuracy", "topk": [1]}},
    "optimizer": {"name": "adam", "lr": 0.0004},
    "engine": {"name": "default", "debug": False, "nb_epochs": 1, "print_freq": 10,
               "saving_criteria": ["loss:min", "acctop1:max"]},
    "misc": {"cuda": False, "seed": 1337, "debug": False, "profile": False},
    "views": {"name": "plotly", "plot_width": 1024,
              "items": ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:train_batch.loss",
                        "logs:train_epoch.acctop1+logs:eval_epoch.acctop1", "logs:train_epoch.lr"]},
}


def test_the_keys_of_the_seeds_abstract_options_are_accepted(tmp_path):
    tree = merge({k: v for k, v in TINY.items() if k not in ("optimizer", "view")}, ABSTRACT)
    options = Options.load(write_options(tmp_path / "abstract.yaml", merge(tree, {"exp": {"dir": str(tmp_path / "exp")}})))
    options.check()
    res = run(options, handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert (res.exp_dir / "view.html").is_file()
