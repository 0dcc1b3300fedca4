"""The non-finite-loss rule, on the host (CPU) and decided on the device (GPU; forced here on CPU).

The rule: a step whose loss is not finite changes no weight and no optimizer state (Adam's step
count and moments included), and is counted.  On a GPU it is decided without a host sync
(:class:`~bootstrap_repro.engines._precision.DeviceSkip`); ``engine._nan_on_device = True`` runs
that path on CPU.  For finite losses both paths give bitwise the same run.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY, write_options

from bootstrap_repro.engines._precision import DeviceSkip, Precision
from bootstrap_repro.engines._sync import SyncGuard
from bootstrap_repro.options import Options, merge
from bootstrap_repro.run import run

OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "sgd_plain": {"name": "sgd", "lr": 0.1},
    "adam": {"name": "adam", "lr": 0.01},
    "adamw_wd": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
    "adam_fused": {"name": "adam", "lr": 0.01, "fused": True},
    "sgd_fused": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "fused": True},
}


@pytest.fixture
def options_with(tmp_path):
    """``options_with(optimizer, engine={}, name='exp')``: the tiny options with this optimizer subtree."""

    def make(optimizer: dict, engine: dict | None = None, name: str = "exp") -> Options:
        tree = merge(TINY, {"exp": {"dir": str(tmp_path / name)}, "engine": engine or {}})
        tree["optimizer"] = dict(optimizer)
        return Options.load(write_options(tmp_path / f"{name}.yaml", tree), [])

    return make


def state_tensors(optimizer) -> list[torch.Tensor]:
    inner = getattr(optimizer, "optimizer", optimizer)
    return [v.detach().clone() for s in inner.state.values() for v in s.values() if isinstance(v, torch.Tensor)]


def snapshot(engine) -> dict[str, list[torch.Tensor]]:
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    return {"params": [p.detach().clone() for p in engine.model.parameters()],
            "state": state_tensors(engine.optimizer), "keys": sorted(map(len, inner.state.values()))}


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x.view(-1).view(torch.uint8) if x.dim() else
                                                                        x.reshape(1).view(torch.uint8),
                                                                        y.view(-1).view(torch.uint8) if y.dim() else
                                                                        y.reshape(1).view(torch.uint8))
                                    for x, y in zip(a, b))


def poisoned_run(options_with, optimizer: dict, on_device: bool, bad_batches: set[int], amp: str = "none"):
    """A 1-epoch run (3 batches) whose loss is NaN at ``bad_batches``; the state around every batch."""
    seen: dict[tuple[str, int], dict] = {}

    def setup(engine):
        engine._nan_on_device = on_device

        def poison(e):
            if e.state.batch in bad_batches and e.epoch == 0:
                e.state.out["loss"] = e.state.out["loss"] * math.nan

        engine.register_hook("train_on_start_batch", lambda e: seen.__setitem__(("before", e.state.batch), snapshot(e)))
        engine.register_hook("train_on_forward", poison)
        engine.register_hook("train_on_end_batch", lambda e: seen.__setitem__(("after", e.state.batch), snapshot(e)))

    res = run(options_with(optimizer, {"nb_epochs": 1, "amp": amp}), setup=setup, handle_signals=False)
    assert res.status == "COMPLETED", res.error
    return res, seen


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_nan_step_changes_no_weight_and_no_state(options_with, opt, on_device):
    res, seen = poisoned_run(options_with, OPTIMIZERS[opt], on_device, {1})
    before, after = seen[("before", 1)], seen[("after", 1)]
    assert same(before["params"], after["params"]), "a weight changed"
    assert same(before["state"], after["state"]) and before["keys"] == after["keys"], "the optimizer state changed"
    assert not same(seen[("before", 2)]["params"], seen[("after", 2)]["params"])  # the next batch steps
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["train_epoch.nb_nan_skipped"] == [1] and res.engine.state.nb_nan_skipped == 1
    assert logs["train_batch.loss"][1] is None
    assert "non-finite loss (nan) at epoch 0 batch 1: optimizer step skipped" in (res.exp_dir / "logs.txt").read_text()


@pytest.mark.parametrize("opt", ["sgd", "adam", "adam_fused", "sgd_fused"])
def test_nan_first_step_leaves_no_state(options_with, opt):
    """The first step creates the optimizer's state: skipped, it leaves none (decided on the host, once)."""
    res, seen = poisoned_run(options_with, OPTIMIZERS[opt], True, {0})
    assert same(seen[("before", 0)]["params"], seen[("after", 0)]["params"])
    assert seen[("after", 0)]["state"] == [] and seen[("after", 0)]["keys"] == []
    assert res.engine.state.nb_nan_skipped == 1


@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("opt", ["sgd", "adam", "adam_fused"])
def test_device_rule_gives_the_host_rules_run_bitwise(options_with, opt, amp):
    """Finite losses: the device path (masked step, found_inf) changes no bit of the run."""
    runs = []
    for on_device in (False, True):
        res = run(options_with(OPTIMIZERS[opt], {"amp": amp}, name=f"exp_{on_device}"),
                  setup=lambda e, d=on_device: setattr(e, "_nan_on_device", d), handle_signals=False)
        assert res.status == "COMPLETED", res.error
        logs = json.loads((res.exp_dir / "logs.json").read_text())
        runs.append(({k: v for k, v in logs.items() if not k.startswith("run.")},
                     [p.detach().clone() for p in res.engine.model.parameters()], state_tensors(res.engine.optimizer)))
    (logs0, w0, s0), (logs1, w1, s1) = runs
    assert logs0 == logs1
    assert same(w0, w1) and same(s0, s1)


# ---------------------------------------------------------------------------- DeviceSkip alone
def tiny_problem(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x = torch.randn(8, 4)
    return net, x


def drive(optimizer_fn, losses_bad: list[bool], precision: Precision | None = None, guard: SyncGuard | None = None):
    net, x = tiny_problem()
    opt = optimizer_fn(net.parameters())
    precision = precision or Precision("none", torch.device("cpu"))
    skip = DeviceSkip(opt, precision, opt.step, distributed=False)
    history = []
    for bad in losses_bad:
        opt.zero_grad()
        loss = net(x).pow(2).mean() * (math.nan if bad else 1.0)
        before = ([p.detach().clone() for p in net.parameters()], state_tensors(opt))
        if guard is not None:
            guard.arm("test")
        flag = skip.flag(loss)
        skip.backward(loss, flag)
        skip.step(flag)
        if guard is not None:
            guard.disarm()
        history.append((before, ([p.detach().clone() for p in net.parameters()], state_tensors(opt)), skip.host_reason))
    return history, opt


class CountingSGD(torch.optim.Optimizer):
    """A custom optimizer with a host (python int) state value: it is decided on the host."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["n"] = st.get("n", 0) + 1
                p.add_(p.grad, alpha=-g["lr"])


@pytest.mark.parametrize("make, kind", [
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), "masked"),
    (lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True), "masked"),
    (lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5), "masked"),
    (lambda ps: torch.optim.AdamW(ps, lr=0.01, fused=True), "found_inf"),
    (lambda ps: CountingSGD(ps), "masked"),
], ids=["sgd-nesterov", "adam-amsgrad", "rmsprop", "adamw-fused", "custom-host-state"])
def test_device_skip_is_exact_for_any_optimizer(make, kind):
    pattern = [False, True, False, True, True, False]
    history, opt = drive(make, pattern)
    assert DeviceSkip(opt, Precision("none", torch.device("cpu")), opt.step, False).kind == kind
    for bad, (before, after, reason) in zip(pattern, history):
        if bad:
            assert same(before[0], after[0]) and same(before[1], after[1])
        else:
            assert not same(before[0], after[0])
    reasons = [r for _, _, r in history]
    assert reasons[0] == "the step created or replaced optimizer state"  # the first step creates state
    if isinstance(opt, CountingSGD):  # its python int changes every step: read on the host every step
        assert all(r is not None for r in reasons)
    else:
        assert reasons[1:] == [None] * (len(pattern) - 1)  # then decided on the device only


def test_device_skip_matches_plain_steps_bitwise():
    pattern = [False] * 5
    plain_net, x = tiny_problem()
    plain = torch.optim.Adam(plain_net.parameters(), lr=0.01)
    for _ in pattern:
        plain.zero_grad()
        plain_net(x).pow(2).mean().backward()
        plain.step()
    history, _ = drive(lambda ps: torch.optim.Adam(ps, lr=0.01), pattern)
    assert same(history[-1][1][0], [p.detach() for p in plain_net.parameters()])
    assert same(history[-1][1][1], state_tensors(plain))


def test_device_skip_with_a_grad_scaler_keeps_pytorchs_behaviour():
    """fp16's path (a CPU GradScaler here): a non-finite loss poisons every gradient, the scaler skips and backs off."""
    precision = Precision("none", torch.device("cpu"))
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    pattern = [False, True, False]
    history, _ = drive(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), pattern, precision)
    assert same(history[1][0][0], history[1][1][0]) and same(history[1][0][1], history[1][1][1])
    assert not same(history[2][0][0], history[2][1][0])
    assert precision.scaler.get_scale() == 2.0 ** 7  # backed off once, for the skipped step


def test_device_skip_takes_no_sync_after_the_first_step():
    guard = SyncGuard(emulate=True)
    with guard.watching():
        drive(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), [False, True, False, True], guard=guard)
    assert [reason for reason, _ in guard.allowed] == ["the step created or replaced optimizer state"]


def test_state_on_another_device_is_decided_on_the_host():
    """torch's non-fused Adam on a GPU keeps its step counts on the CPU: the flag is then read per step."""
    net, _ = tiny_problem()
    opt, told = torch.optim.Adam(net.parameters()), []
    skip = DeviceSkip(opt, Precision("none", torch.device("cpu")), opt.step, distributed=False, warn=told.append)
    reason = skip._groups([p for p in net.parameters()], torch.device("meta"))
    assert reason == "Adam keeps state tensors on cpu, the loss is on meta"
    skip._host_step(torch.tensor(True), reason)
    assert told == [reason] and skip.host_reason == reason



def test_builtin_optimizers_fuse_by_default_only_on_cuda_and_only_when_the_options_do_not_choose():
    """On CUDA adam/adamw/sgd run fused (device-side skip, no host step counts); options that choose win; CPU: as torch."""
    import torch

    from bootstrap_repro.optimizers._factory import _fuse_by_default

    cpu = [torch.nn.Parameter(torch.zeros(2))]
    assert not _fuse_by_default(torch.optim.Adam, {}, cpu)

    class _Cuda(torch.Tensor):  # a parameter that says it is on CUDA, without a GPU
        is_cuda = True

    cuda = [torch.zeros(2).as_subclass(_Cuda)]
    assert _fuse_by_default(torch.optim.Adam, {}, cuda) and _fuse_by_default(torch.optim.SGD, {"lr": 0.1}, cuda)
    assert not _fuse_by_default(torch.optim.Adam, {"fused": False}, cuda)
    assert not _fuse_by_default(torch.optim.AdamW, {"foreach": True}, cuda)
    assert not _fuse_by_default(torch.optim.RMSprop, {}, cuda)
