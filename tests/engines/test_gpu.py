"""GPU-only checks: they run where CUDA is present and skip elsewhere (never needed by CI).

``scripts/gpu_check.sh`` runs them with the GPU benchmarks in one GPU slot.  They cover what the
CPU suite cannot: the CUDA batch path with no host sync (the sync guard with
``torch.cuda.set_sync_debug_mode('error')``), the non-finite-loss rule on the device (masked
step, fused ``found_inf``, fp16's scaler), the side-stream prefetch, bf16 vs fp32, fp16's scaler
in checkpoints, determinism, and DDP over NCCL on one GPU.
"""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch
from conftest import TINY, cli, write_options

from bootstrap_repro.engines import HOOKS
from bootstrap_repro.engines._distributed import DistInfo
from bootstrap_repro.engines._sync import SyncGuard
from bootstrap_repro.options import Options, merge
from bootstrap_repro.run import run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FIRST_STEP = "the step created or replaced optimizer state"
SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "fused": False}  # the masked step (fused is the CUDA default)
ADAM_FUSED = {"name": "adam", "lr": 0.01, "fused": True}


@pytest.fixture
def gpu_options(tmp_path):
    """``gpu_options(optimizer=SGD, name='exp', **engine)``: the tiny options on cuda with 4 batches per epoch."""

    def make(optimizer: dict | None = None, name: str = "exp", **engine) -> Options:
        tree = merge(TINY, {"exp": {"dir": str(tmp_path / name)}, "dataset": {"nb_items": 64},
                            "engine": {"device": "cuda", **engine}})
        tree["optimizer"] = dict(optimizer or SGD)
        return Options.load(write_options(tmp_path / f"{name}.yaml", tree), [])

    return make


def test_fp16_run_on_gpu_checkpoints_the_scaler_and_resumes_on_cpu(tmp_path, tiny_file):
    f = tiny_file({"engine": {"device": "cuda", "amp": "fp16", "nb_epochs": 2}})
    r = cli("run", "-o", str(f))
    assert r.returncode == 0, r.stderr
    exp = tmp_path / "exp"
    state = torch.load(exp / "ckpt_last_engine.pth.tar", weights_only=True)
    assert state["grad_scaler"] is not None and state["grad_scaler"]["scale"] > 0
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "3",
            "--engine.device", "cpu", "--engine.amp", "none")
    assert r.returncode == 0, r.stderr
    assert json.loads((exp / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]


def test_deterministic_gpu_runs_are_identical(tmp_path, tiny_file):
    logs = []
    for name in ("a", "b"):
        f = tiny_file({"engine": {"device": "cuda"}, "misc": {"deterministic": True}}, name=f"{name}.yaml")
        r = cli("run", "-o", str(f), "--exp.dir", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        logs.append(json.loads((tmp_path / name / "logs.json").read_text()))
    assert logs[0] == logs[1]


def guarded(guard: SyncGuard, calls: list[str]):
    def setup(engine):
        assert engine._nan_on_device  # the default on cuda
        engine.sync_guard = guard
        for name in HOOKS:
            engine.register_hook(name, lambda e, n=name: calls.append(n))

    return setup


@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("optimizer", [SGD, ADAM_FUSED], ids=["sgd", "adam-fused"])
def test_sync_guard_on_cuda(gpu_options, amp, optimizer):
    """No device-to-host read in a batch: torch's sync debug mode and the guard, every hook registered."""
    guard, calls = SyncGuard(), []
    res = run(gpu_options(optimizer, amp=amp, print_freq=2, log_batches=True), setup=guarded(guard, calls),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert guard.cuda_sync_debug and guard.batches == {"train": 8, "eval": 8}
    assert guard.allowed == [(FIRST_STEP, "train epoch 0 batch 0")]
    assert torch.cuda.get_sync_debug_mode() == 0  # restored


def test_non_fused_adam_reads_the_flag_on_the_host_and_says_so(gpu_options):
    """torch's non-fused Adam keeps its step counts in host memory: one read per step, one warning."""
    guard = SyncGuard()
    res = run(gpu_options({"name": "adam", "lr": 0.01, "fused": False}), setup=guarded(guard, []),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert len(guard.allowed) == 8
    text = (res.exp_dir / "logs.txt").read_text()
    assert text.count("engine.nan_check: Adam keeps state tensors on cpu, the loss is on cuda:0") == 1


@pytest.mark.parametrize("optimizer, amp", [(SGD, "none"), (ADAM_FUSED, "bf16"), (SGD, "fp16"), (ADAM_FUSED, "fp16")],
                         ids=["masked", "found_inf", "scaler", "scaler-fused"])
def test_nan_loss_on_cuda_changes_nothing(gpu_options, optimizer, amp):
    seen = {}

    def snap(e):
        inner = getattr(e.optimizer, "optimizer", e.optimizer)
        return ([p.detach().clone() for p in e.model.parameters()],
                [v.detach().clone() for s in inner.state.values() for v in s.values() if isinstance(v, torch.Tensor)])

    def setup(engine):
        engine.register_hook("train_on_start_batch", lambda e: seen.__setitem__(("b", e.state.batch), snap(e)))
        engine.register_hook("train_on_forward", lambda e: e.state.out.__setitem__("loss", e.state.out["loss"] * math.nan)
                             if e.state.batch == 2 else None)
        engine.register_hook("train_on_end_batch", lambda e: seen.__setitem__(("a", e.state.batch), snap(e)))

    res = run(gpu_options(optimizer, amp=amp, nb_epochs=1), setup=setup, handle_signals=False)
    assert res.status == "COMPLETED", res.error
    (p0, s0), (p1, s1) = seen[("b", 2)], seen[("a", 2)]
    assert all(torch.equal(a, b) for a, b in zip(p0, p1)), "a weight changed"
    assert len(s0) == len(s1) and all(torch.equal(a, b) for a, b in zip(s0, s1)), "the optimizer state changed"
    assert res.engine.state.nb_nan_skipped == 1
    assert "non-finite loss (nan) at epoch 0 batch 2: optimizer step skipped" in (res.exp_dir / "logs.txt").read_text()


def test_bf16_epoch_metrics_close_to_fp32(gpu_options):
    got = {}
    for amp in ("none", "bf16"):
        res = run(gpu_options(name=f"exp_{amp}", amp=amp, nb_epochs=3), handle_signals=False)
        assert res.status == "COMPLETED", res.error
        got[amp] = json.loads((res.exp_dir / "logs.json").read_text())
    for key in ("train_epoch.loss", "eval_epoch.loss"):
        assert got["bf16"][key] == pytest.approx(got["none"][key], rel=0.05, abs=0.02), key
    for key in ("eval_epoch.acctop1",):
        assert got["bf16"][key] == pytest.approx(got["none"][key], abs=7.0), key  # 1 item of 32 = 3.1 points


class _OneRankDDP(DistInfo):
    """A world of one process that still takes the DDP path (NCCL group, DDP wrapper, reductions)."""

    @property
    def enabled(self) -> bool:
        return True


def test_ddp_nccl_on_one_gpu(gpu_options, monkeypatch):
    """DDP over NCCL with one rank: the wrapper, the flag's all-reduce and the epoch reductions, under the guard."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        guard = SyncGuard()

        def setup(engine):
            engine.dist = _OneRankDDP(0, 1, 0)
            guarded(guard, [])(engine)

        res = run(gpu_options(nb_epochs=2, device="cuda:0"), setup=setup, handle_signals=False)
        assert res.status == "COMPLETED", res.error
        assert isinstance(res.engine.model, torch.nn.parallel.DistributedDataParallel)
        assert guard.batches == {"train": 8, "eval": 8} and guard.allowed == [(FIRST_STEP, "train epoch 0 batch 0")]
        logs = json.loads((res.exp_dir / "logs.json").read_text())
        assert logs["train_epoch.epoch"] == [0, 1] and all(math.isfinite(v) for v in logs["eval_epoch.loss"])
    finally:
        if dist.is_initialized():  # run() tears the group down when the engine is distributed
            dist.destroy_process_group()


def test_prefetch_gives_the_same_batches(gpu_options):
    """The side-stream copy changes nothing: a CUDA run's batch losses equal those of copies made in line."""
    from bootstrap_repro.engines import _engine

    first = run(gpu_options(name="prefetch"), handle_signals=False)

    class Inline:
        def __init__(self, batches, device):
            self.batches, self.device = batches, device

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            return (_engine.to_device(b, self.device) for b in self.batches)

    orig = _engine.CudaPrefetcher
    _engine.CudaPrefetcher = Inline
    try:
        second = run(gpu_options(name="inline"), handle_signals=False)
    finally:
        _engine.CudaPrefetcher = orig
    a, b = (json.loads((r.exp_dir / "logs.json").read_text()) for r in (first, second))
    assert a["train_batch.loss"][:1] == b["train_batch.loss"][:1]  # same first batch, bit for bit
    assert a["eval_epoch.loss"] == pytest.approx(b["eval_epoch.loss"], rel=1e-4)


def test_builtin_adam_is_fused_on_cuda_by_default_and_reads_only_at_its_first_step(gpu_options):
    guard = SyncGuard()
    res = run(gpu_options({"name": "adam", "lr": 0.01}), setup=guarded(guard, []), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert len(guard.allowed) == 1, guard.allowed  # the first step creates the state
    assert "keeps state tensors on cpu" not in (res.exp_dir / "logs.txt").read_text()
