"""Optimizers: the wrapper (clipping, scheduler timing, state) and the factory with its errors."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from bootstrap_repro import optimizers
from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.optimizers import Optimizer
from bootstrap_repro.options import DEFAULTS, Options, merge


class Logger:
    """Records messages and logged values like the engine's logger."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.values: list[tuple[str, Any]] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)

    def log_value(self, name: str, value: Any) -> None:
        self.values.append((name, value))


def make_engine(optimizer: Any, nb_epochs: int = 3) -> SimpleNamespace:
    """A stand-in for the engine that records hooks; ``run_hooks(name)`` calls them."""
    hooks: list[tuple[str, Any]] = []
    tree = merge(DEFAULTS, {"engine": {"nb_epochs": nb_epochs}})
    if optimizer is not None:
        tree["optimizer"] = optimizer
    engine = SimpleNamespace(options=Options(tree), device=torch.device("cpu"), seed=0, hooks=hooks,
                             register_hook=lambda name, fn: hooks.append((name, fn)), logger=Logger())
    engine.run_hooks = lambda name: [fn() for n, fn in hooks if n == name]
    return engine


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + i)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)


def train_step(model: torch.nn.Module, opt: Any, i: int) -> None:
    x, y = batch(i)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


# --------------------------------------------------------------------------- factory
def test_factory_builds_sgd_with_its_options():
    model = make_model()
    opt = optimizers.factory(model, make_engine({"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}))
    assert isinstance(opt, Optimizer) and isinstance(opt.optimizer, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert opt.lr == 0.1 and opt.scheduler is None and opt.grad_clip is None
    assert len(group["params"]) == 4


def test_factory_adam_adamw_betas_and_string_numbers():
    opt = optimizers.factory(make_model(), make_engine({"name": "adam", "lr": "1e-3", "betas": [0.8, 0.9]}))
    assert isinstance(opt.optimizer, torch.optim.Adam)
    assert opt.lr == 0.001 and opt.param_groups[0]["betas"] == (0.8, 0.9)
    opt = optimizers.factory(make_model(), make_engine({"name": "adamw", "lr": 0.01}))
    assert isinstance(opt.optimizer, torch.optim.AdamW)


def test_factory_skips_frozen_parameters():
    model = make_model()
    model[0].weight.requires_grad_(False)
    opt = optimizers.factory(model, make_engine({"name": "sgd", "lr": 0.1}))
    assert len(opt.param_groups[0]["params"]) == 3


def test_factory_without_optimizer_section_returns_none():
    assert optimizers.factory(make_model(), make_engine(None)) is None


def test_factory_without_engine_uses_the_current_options():
    with Options(merge(DEFAULTS, {"optimizer": {"name": "sgd", "lr": 0.3}})).activate():
        assert optimizers.factory(make_model()).lr == 0.3


def test_factory_errors():
    cases = [
        ({"name": "sdg", "lr": 0.1},
         "optimizer.name: unknown name 'sdg'; did you mean sgd? "
         "(valid: adam, adamw, sgd; or set optimizer.import to a module with a factory)"),
        ({"lr": 0.1},
         "optimizer.name: missing; set it to one of adam, adamw, sgd or set optimizer.import"),
        ({"name": "adam", "lr": 0.1, "momentum": 0.9},
         "optimizer.momentum: not an option of optimizer 'adam' (valid: lr, betas, eps, weight_decay, amsgrad, "
         "foreach, maximize, capturable, differentiable, fused, decoupled_weight_decay)"),
        ({"name": "sgd", "lr": "fast"}, "optimizer.lr: expected a number, got 'fast'"),
        ({"name": "sgd", "lr": 0.1, "grad_clip": -1},
         "optimizer.grad_clip: expected a max gradient norm >= 0 or null (off), got -1"),
        ({"name": "sgd", "lr": 0.1, "lr_scheduler": {"name": "steps"}},
         "optimizer.lr_scheduler.name: unknown name 'steps'; did you mean step? "
         "(valid: cosine, step, or a torch.optim.lr_scheduler class name such as StepLR)"),
        ({"name": "sgd", "lr": 0.1, "lr_scheduler": {"name": "step"}},
         "optimizer.lr_scheduler.step_size: missing; the step scheduler needs it (epochs between decays), "
         "e.g. step_size: 10"),
        ({"name": "sgd", "lr": 0.1, "lr_scheduler": {"name": "step", "step_size": 1, "gama": 0.5}},
         "optimizer.lr_scheduler.gama: not an option of lr_scheduler 'step'; did you mean "
         "optimizer.lr_scheduler.gamma? (valid: step_size, gamma)"),
    ]
    for options, expected in cases:
        with pytest.raises(OptionsError) as info:
            optimizers.factory(make_model(), make_engine(options))
        assert str(info.value) == expected


def test_factory_model_without_trainable_parameters():
    with pytest.raises(OptionsError) as info:
        optimizers.factory(torch.nn.ReLU(), make_engine({"name": "sgd", "lr": 0.1}))
    assert str(info.value) == (
        "optimizer: the model has no trainable parameters; remove the optimizer section for an eval-only run"
    )


def test_factory_import_plugin_and_errors(plugin):
    name = plugin(
        "import torch\n"
        "def factory(model, engine):\n"
        "    return torch.optim.SGD(model.parameters(), lr=engine.options['optimizer.lr'])\n"
    )
    model = make_model()
    opt = optimizers.factory(model, make_engine({"import": name, "lr": 0.25}))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.25
    with pytest.raises(PluginError) as info:
        optimizers.factory(model, make_engine({"import": "no_such_module_xyz"}))
    assert str(info.value).startswith("optimizer.import: module 'no_such_module_xyz' not found")
    empty = plugin("x = 1\n")
    with pytest.raises(PluginError) as info:
        optimizers.factory(model, make_engine({"import": empty}))
    assert str(info.value).startswith(f"optimizer.import: module '{empty}' has no callable 'factory'")


# --------------------------------------------------------------------------- wrapper
def test_step_matches_the_torch_optimizer_and_zero_grad_drops_gradients():
    model, ref = make_model(), make_model()
    opt = optimizers.factory(model, make_engine({"name": "sgd", "lr": 0.1, "momentum": 0.9}))
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for i in range(3):
        train_step(model, opt, i)
        train_step(ref, ref_opt, i)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("grad_clip", [None, 0])
def test_grad_clip_off(grad_clip):
    model, ref = make_model(), make_model()
    opt = optimizers.factory(model, make_engine({"name": "sgd", "lr": 0.1, "grad_clip": grad_clip}))
    assert opt.grad_clip is None
    train_step(model, opt, 0)
    train_step(ref, torch.optim.SGD(ref.parameters(), lr=0.1), 0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_grad_clip_bounds_the_gradient_norm_before_the_step():
    model = make_model()
    opt = optimizers.factory(model, make_engine({"name": "sgd", "lr": 1.0, "grad_clip": 0.01}))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batch(0)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    raw_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert raw_norm > 0.01
    opt.step()
    update = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert torch.allclose(torch.linalg.vector_norm(update), torch.tensor(0.01), rtol=1e-4)


def test_scheduler_steps_at_the_end_of_each_training_epoch():
    engine = make_engine({"name": "sgd", "lr": 1.0, "lr_scheduler": {"name": "step", "step_size": 1, "gamma": 0.1}})
    model = make_model()
    opt = optimizers.factory(model, engine)
    assert [name for name, _ in engine.hooks] == ["train_on_end_epoch"]
    seen = []
    for epoch in range(3):
        for i in range(2):
            seen.append((epoch, opt.param_groups[0]["lr"]))
            train_step(model, opt, i)
        engine.run_hooks("train_on_end_epoch")
    assert seen == [(0, 1.0), (0, 1.0), (1, pytest.approx(0.1)), (1, pytest.approx(0.1)),
                    (2, pytest.approx(0.01)), (2, pytest.approx(0.01))]
    assert [name for name, _ in engine.logger.values] == ["train_epoch.lr"] * 3
    assert [v for _, v in engine.logger.values] == [1.0, pytest.approx(0.1), pytest.approx(0.01)]


def test_cosine_t_max_defaults_to_nb_epochs():
    opt = optimizers.factory(make_model(), make_engine({"name": "sgd", "lr": 0.1, "lr_scheduler": {"name": "cosine"}},
                                                       nb_epochs=7))
    assert opt.scheduler.T_max == 7
    opt = optimizers.factory(make_model(), make_engine(
        {"name": "sgd", "lr": 0.1, "lr_scheduler": {"name": "cosine", "T_max": 2, "eta_min": 0.01}}))
    assert (opt.scheduler.T_max, opt.scheduler.eta_min) == (2, 0.01)


def test_state_dict_round_trip_reproduces_the_next_steps_bit_exactly():
    options = {"name": "adam", "lr": 0.01, "grad_clip": 1.0,
               "lr_scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}}
    engine = make_engine(options)
    model = make_model()
    opt = optimizers.factory(model, engine)
    for i in range(3):
        train_step(model, opt, i)
    engine.run_hooks("train_on_end_epoch")
    model_state, opt_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert set(opt_state) == {"optimizer", "scheduler"}
    for i in range(3, 5):
        train_step(model, opt, i)
    expected = [p.detach().clone() for p in model.parameters()]

    engine2 = make_engine(options)
    model2 = make_model(seed=1)  # different initial weights, overwritten by the checkpoint
    opt2 = optimizers.factory(model2, engine2)
    model2.load_state_dict(model_state)
    opt2.load_state_dict(opt_state)
    assert opt2.lr == 0.005 and opt2.scheduler.last_epoch == 1
    for i in range(3, 5):
        train_step(model2, opt2, i)
    assert all(torch.equal(p, q) for p, q in zip(expected, model2.parameters()))


def test_wrapper_without_engine_or_scheduler():
    model = make_model()
    opt = Optimizer(torch.optim.SGD(model.parameters(), lr=0.5))
    opt.end_epoch()  # nothing to log, nothing to step
    opt.end_epoch(SimpleNamespace())  # hooks may be called with the engine
    assert opt.lr == 0.5 and opt.state_dict()["scheduler"] is None
    opt.load_state_dict(opt.state_dict())
