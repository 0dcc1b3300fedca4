"""GPU-engine features that run on CPU: DDP over gloo (2 processes), bf16 autocast, determinism errors."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import TINY, cli, write_options
from bootstrap_repro.options import merge

pytestmark = pytest.mark.slow

# Datasets built without shuffling (so a 2-rank run and a 1-process run see the same data
# order), and a hook that saves each rank's final weights.
PLUGIN = textwrap.dedent("""
    import os, signal, torch
    from bootstrap_repro.datasets import Synthetic
    from bootstrap_repro.engines._distributed import unwrap

    def factory(engine):
        opt = engine.options['dataset']
        kw = dict(nb_items=opt['nb_items'], nb_classes=opt['nb_classes'], dim=opt['dim'],
                  batch_size=opt['batch_size'], nb_threads=opt['nb_threads'], seed=engine.seed, shuffle=False)
        out_dir = os.environ.get('WEIGHTS_DIR')
        if out_dir:
            engine.register_hook('train_on_end', lambda e: torch.save(
                unwrap(e.model).state_dict(), os.path.join(out_dir, f'rank{e.dist.rank}.pt')))
        kill = os.environ.get('KILL_EPOCH')
        if kill and engine.dist.rank == 1:
            engine.register_hook('train_on_start_batch', lambda e: os.kill(os.getpid(), signal.SIGKILL)
                                 if e.epoch == int(kill) and e.state.batch == 1 else None)
        return {'train': Synthetic('train', **kw), 'eval': Synthetic('val', **kw)}
""")


def setup_exp(tmp_path: Path, batch_size: int, name: str = "o.yaml", **changes) -> Path:
    (tmp_path / "ddp_plugin.py").write_text(PLUGIN)
    tree = merge(TINY, {
        "exp": {"dir": str(tmp_path / "exp")},
        "dataset": {"import": "ddp_plugin", "nb_items": 64, "batch_size": batch_size},
        "engine": {"nb_epochs": 3},
    })
    return write_options(tmp_path / name, merge(tree, changes))


def epoch_values(exp: Path) -> dict[str, list]:
    logs = json.loads((exp / "logs.json").read_text())
    return {k: v for k, v in logs.items() if "_epoch." in k}


def test_ddp_two_gloo_ranks_match_one_process(tmp_path):
    env = {"PYTHONPATH": str(tmp_path), "WEIGHTS_DIR": str(tmp_path)}
    # 2 ranks x 16 items per step == 1 process x 32 items per step, same data order
    f2 = setup_exp(tmp_path, 16)
    r = cli("run", "-o", str(f2), "--nproc-per-node", "2", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.splitlines()[0] == (f"torchrun: 2 process(es) per node, gloo backend, OMP_NUM_THREADS="
                                        f"{os.environ.get('OMP_NUM_THREADS', '1')}; rank 0 writes {tmp_path / 'exp'}")
    w0, w1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged"
    text = (tmp_path / "exp" / "logs.txt").read_text()
    assert text.count("train epoch 0 (1/3)") == 1 and r.stdout.count("train epoch 0 (1/3)") == 1  # logs written once
    ddp = epoch_values(tmp_path / "exp")

    single_dir = tmp_path / "single"
    single_dir.mkdir()
    f1 = setup_exp(single_dir, 32)
    r = cli("run", "-o", str(f1), env={"PYTHONPATH": str(single_dir), "WEIGHTS_DIR": str(single_dir)})
    assert r.returncode == 0, r.stderr
    one = epoch_values(single_dir / "exp")
    assert ddp.keys() == one.keys()
    for k in ddp:
        assert ddp[k] == pytest.approx(one[k], rel=1e-5, abs=1e-6), k
    ws = torch.load(single_dir / "rank0.pt", weights_only=True)
    assert all(torch.allclose(w0[k], ws[k], rtol=1e-5, atol=1e-6) for k in w0)


def test_ddp_kill_and_resume(tmp_path):
    env = {"PYTHONPATH": str(tmp_path)}
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = setup_exp(ref_dir, 16)
    assert cli("run", "-o", str(ref), "--nproc-per-node", "2", env={"PYTHONPATH": str(ref_dir)}).returncode == 0
    f = setup_exp(tmp_path, 16)
    # --no-cache: the same options as the reference, and this run must train (and be killed)
    r = cli("run", "-o", str(f), "--nproc-per-node", "2", "--no-cache", env={**env, "KILL_EPOCH": "1"})
    assert r.returncode != 0
    exp = tmp_path / "exp"
    assert json.loads((exp / "logs.json").read_text())["train_epoch.epoch"] == [0]
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--nproc-per-node", "2", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert epoch_values(exp) == epoch_values(ref_dir / "exp")


def test_bf16_autocast_trains_on_cpu(tmp_path, tiny_file):
    f = tiny_file({"engine": {"amp": "bf16", "nb_epochs": 3}, "optimizer": {"lr": 0.05}})
    r = cli("run", "-o", str(f))
    assert r.returncode == 0, r.stderr
    logs = json.loads((tmp_path / "exp" / "logs.json").read_text())
    assert logs["train_epoch.loss"][-1] < logs["train_epoch.loss"][0]
    assert logs["eval_epoch.acctop1"][-1] > 50


@pytest.mark.parametrize("argv, message", [
    (["--engine.amp", "fp16"],
     "engine.amp: fp16 needs a CUDA device (this run is on cpu); use --engine.amp bf16 on CPU, or none"),
    (["--engine.device", "cuda"],
     f"engine.device: 'cuda' asked but torch sees no GPU (torch {torch.__version__}, CUDA build none); "
     "use --engine.device cpu"),
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only errors")
def test_gpu_options_on_a_cpu_machine(tmp_path, tiny_file, argv, message):
    r = cli("run", "-o", str(tiny_file()), *argv)
    assert r.returncode == 2 and r.stderr == f"error: {message}\n"
    assert not (tmp_path / "exp").exists()


def test_deterministic_mode_names_the_op(tmp_path, tiny_file):
    (tmp_path / "nondet_net.py").write_text(textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(8, 4)
            def forward(self, batch):
                x = (batch['data'] if isinstance(batch, dict) else batch).clone()
                x.put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))  # no deterministic implementation
                return torch.log_softmax(self.lin(x), dim=1)
        def factory(engine):
            return Net()
    """))
    f = tiny_file({"model": {"network": {"import": "nondet_net", "name": None}}, "misc": {"deterministic": True},
                   "engine": {"saving_criteria": []}})
    r = cli("run", "-o", str(f), env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: misc.deterministic: put_ has no deterministic implementation on cpu; "
        "replace that op or run with --misc.deterministic false")
    r = cli("run", "-o", str(f), "--misc.deterministic", "false", "--exp.dir", str(tmp_path / "nondet_off"),
            env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr


def test_only_rank0_cleans_the_exp_dir_when_loading(tmp_path, tiny_file):
    """A resume under DDP: every rank loads the checkpoint, but a rank other than 0 must not delete
    rank 0's files in flight (its ``logs.json`` rewrite's temp file, a staged checkpoint): that race
    failed a 2-rank resume with ``FileNotFoundError`` on ``os.replace`` of ``.logs.json.*.tmp``."""
    from bootstrap_repro.engines import Checkpointer
    from bootstrap_repro.engines._distributed import DistInfo
    from bootstrap_repro.logger import Logger
    from bootstrap_repro.options import Options
    from bootstrap_repro.run import _build, run

    assert run(Options.load(tiny_file(), []), handle_signals=False).status == "COMPLETED"
    exp = tmp_path / "exp"
    opt = Options.load(tiny_file(), ["--exp.resume", "last"]).freeze()
    in_flight = [exp / ".logs.json.abc123.tmp", exp / "ckpt_last_model.pth.tar.0123.staged"]
    for rank, kept in ((1, True), (0, False)):
        for path in in_flight:
            path.write_bytes(b"being written")
        with opt.activate(), Logger(activate=False, echo=False).activate() as logger:
            engine = _build(opt, logger, eval_only=False)
        engine.dist = DistInfo(rank=rank, world_size=2)
        Checkpointer(exp).load(engine, "last")
        assert engine.state.epoch > 0
        assert [p.exists() for p in in_flight] == [kept, kept], rank


def test_a_stray_rank_without_a_world_size_is_a_single_run(monkeypatch):
    """``RANK=1`` left in a shell, ``WORLD_SIZE`` unset: one process, so it is rank 0 and writes."""
    from bootstrap_repro.engines._distributed import dist_info

    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist_info().is_rank0 and not dist_info().enabled
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not dist_info().is_rank0 and dist_info().enabled
