"""The sync guard: no device-to-host read inside the batch loop (issue 14, item 2), shown on CPU.

``SyncGuard(emulate=True)`` counts CPU tensors as device tensors, and ``engine._nan_on_device``
runs the GPU's non-finite-loss rule: the batch loop of a GPU run, checked without a GPU.  The
loop runs train and eval batches with every hook registered, a print line every batch, per-batch
logs, amp none and bf16, in process and under DDP (2 gloo processes).  Putting a read back
(``bool(torch.isfinite(loss))``, the host rule's ``loss.item()``, a hook's ``.item()``) fails.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from conftest import TINY, cli, write_options

from bootstrap_repro.engines import HOOKS, _precision
from bootstrap_repro.engines._sync import SyncError, SyncGuard, allowed_sync
from bootstrap_repro.options import merge
from bootstrap_repro.run import run

FIRST_STEP = "the step created or replaced optimizer state"


# ---------------------------------------------------------------------------- the guard alone
@pytest.mark.parametrize("read, name", [
    (lambda t: t.item(), "Tensor.item"),
    (lambda t: bool(t > 0), "bool(tensor)"),
    (lambda t: float(t), "float(tensor)"),
    (lambda t: int(t), "int(tensor)"),
    (lambda t: [0, 1][t.long()], "tensor used as an index"),
    (lambda t: t.tolist(), "Tensor.tolist"),
    (lambda t: t.numpy(), "Tensor.numpy"),
    (lambda t: t.cpu(), "Tensor.cpu"),
    (lambda t: t.to("cpu"), "Tensor.to('cpu')"),
    (lambda t: t.reshape(1).nonzero(), "Tensor.nonzero"),
    (lambda t: torch.arange(1)[t.reshape(1) > 0], "boolean-mask index"),
    (lambda t: f"{t:.3f}", "format(tensor)"),
    (lambda t: torch.equal(t, t), "torch.equal"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_guard_fails_on_each_kind_of_read(read, name):
    t = torch.tensor(1.0)
    guard = SyncGuard(emulate=True)
    with guard.watching():
        read(t)  # not armed: allowed
        guard.arm("train epoch 0 batch 3", "train")
        with pytest.raises(SyncError) as exc:
            read(t)
        guard.disarm()
        read(t)
    assert str(exc.value).startswith(f"device-to-host read inside the batch loop (train epoch 0 batch 3): {name} at ")
    assert "test_sync_guard.py:" in str(exc.value)  # the line that read


def test_guard_lets_device_work_through():
    guard = SyncGuard(emulate=True)
    x = torch.randn(4, 3, requires_grad=True)
    with guard.watching():
        guard.arm("b", "train")
        loss = (x * 2).sum()
        loss.backward()
        flag = torch.isfinite(loss).logical_not()
        torch.where(flag, x, x * 0).sum().detach()
        _ = x.shape[0], x.dim(), x.requires_grad, x.dtype, x.device
        with allowed_sync("a documented read"):
            bool(flag)
    assert guard.allowed == [("a documented read", "b")] and guard.batches["train"] == 1


def test_without_emulation_cpu_tensors_are_host_tensors():
    guard = SyncGuard(emulate=False)
    with guard.watching():
        guard.arm("b")
        assert torch.tensor(2.0).item() == 2.0  # a CPU tensor on a GPU run is in host memory


# ---------------------------------------------------------------------------- the engine's loop
def guarded(engine, guard: SyncGuard, calls: list[str]) -> None:
    """The GPU's batch path on CPU, under the guard, with every hook registered."""
    engine._nan_on_device = True
    engine.sync_guard = guard
    for name in HOOKS:
        engine.register_hook(name, lambda e, n=name: calls.append(n))
    engine.register_hook("train_on_forward", lambda e: e.state.out["loss"].detach())  # device work: fine


@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.1, "momentum": 0.9}, {"name": "adam", "lr": 0.01}],
                         ids=["sgd", "adam"])
def test_no_read_in_train_and_eval_batches(tmp_path, amp, optimizer):
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")},
                        "engine": {"amp": amp, "print_freq": 1, "log_batches": True, "nb_epochs": 2}})
    tree["optimizer"] = optimizer
    from bootstrap_repro.options import Options

    guard, calls = SyncGuard(emulate=True), []
    res = run(Options.load(write_options(tmp_path / "o.yaml", tree), []), setup=lambda e: guarded(e, guard, calls),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert guard.batches == {"train": 6, "eval": 6}  # 2 epochs x 3 batches of each: all guarded
    assert guard.allowed == [(FIRST_STEP, "train epoch 0 batch 0")]  # the step that creates the state, once
    never = {"eval_on_start", "eval_on_end", "engine_on_resume", "engine_on_exception"}  # eval-only, resume, failure
    assert set(calls) == set(HOOKS) - never  # every other hook fired
    assert calls.count("train_on_print") == 6  # a print line every batch, its reads allowed


def test_the_host_rule_is_a_read_per_batch(tiny_options):
    """The CPU's host rule (``loss.item()``) under the guard: the read is caught."""
    guard = SyncGuard(emulate=True)

    def setup(engine):
        guarded(engine, guard, [])
        engine._nan_on_device = False

    res = run(tiny_options(), setup=setup, handle_signals=False)
    assert res.status == "FAILED"
    assert isinstance(res.error, SyncError), res.error
    assert str(res.error).startswith("device-to-host read inside the batch loop (train epoch 0 batch 0): "
                                     "Tensor.item at bootstrap_repro/engines/_engine.py:")


def test_a_bool_put_back_in_the_loop_fails(tiny_options, monkeypatch):
    """Reintroduce ``bool(torch.isfinite(loss))`` in the device rule: the guard fails the run."""
    def flag(self, loss):
        return torch.tensor(not bool(torch.isfinite(loss)))

    monkeypatch.setattr(_precision.DeviceSkip, "flag", flag)
    guard = SyncGuard(emulate=True)
    res = run(tiny_options(), setup=lambda e: guarded(e, guard, []), handle_signals=False)
    assert res.status == "FAILED" and isinstance(res.error, SyncError), res.error
    assert "(train epoch 0 batch 0): bool(tensor) at " in str(res.error)
    assert "test_sync_guard.py:" in str(res.error)


def test_a_hook_that_reads_fails_but_a_print_hook_may(tiny_options):
    guard = SyncGuard(emulate=True)

    def setup(engine):
        guarded(engine, guard, [])
        engine.register_hook("train_on_print", lambda e: e.state.out["loss"].item())  # print time: allowed
        engine.register_hook("eval_on_end_batch", lambda e: float(e.state.out["loss"]) if e.state.batch == 2 else None)

    res = run(tiny_options({"engine": {"print_freq": 1}}), setup=setup, handle_signals=False)
    assert res.status == "FAILED" and isinstance(res.error, SyncError), res.error
    assert "(eval epoch 0 batch 2): float(tensor) at " in str(res.error)


def test_a_nan_loss_under_the_guard_is_counted_at_the_epoch_end(tiny_options):
    guard = SyncGuard(emulate=True)

    def setup(engine):
        guarded(engine, guard, [])
        engine.register_hook("train_on_forward", lambda e: e.state.out.__setitem__("loss", e.state.out["loss"] * math.nan)
                             if e.state.batch == 1 else None)

    res = run(tiny_options({"engine": {"nb_epochs": 1}}), setup=setup, handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert res.engine.state.nb_nan_skipped == 1
    assert "non-finite loss (nan) at epoch 0 batch 1: optimizer step skipped" in (res.exp_dir / "logs.txt").read_text()


# ---------------------------------------------------------------------------- DDP (2 gloo processes)
PLUGIN = textwrap.dedent("""
    import json, os
    from bootstrap_repro.engines import HOOKS
    from bootstrap_repro.engines._sync import SyncGuard

    def register(engine):
        guard = SyncGuard(emulate=True)
        engine.sync_guard, engine._nan_on_device = guard, True
        for name in HOOKS:
            engine.register_hook(name, lambda e: None)
        out = os.environ['GUARD_OUT']
        engine.register_hook('train_on_end', lambda e: open(os.path.join(out, f'rank{e.dist.rank}.json'), 'w').write(
            json.dumps({'batches': dict(guard.batches), 'allowed': guard.allowed})))
""")


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_no_read_under_ddp(tmp_path, amp):
    (tmp_path / "guard_plugin.py").write_text(PLUGIN)
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")}, "dataset": {"nb_items": 64},
                        "engine": {"hooks": ["guard_plugin"], "amp": amp, "print_freq": 2}})
    f = write_options(tmp_path / "o.yaml", tree)
    r = cli("run", "-o", str(f), "--nproc-per-node", "2", env={"PYTHONPATH": str(tmp_path), "GUARD_OUT": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["batches"] == {"train": 4, "eval": 4}  # 2 epochs x 2 batches of 16 per rank
        assert got["allowed"] == [[FIRST_STEP, "train epoch 0 batch 0"]]
