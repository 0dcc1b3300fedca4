"""Crash safety: kill -9 at any point, resume, and get bit-identical logs and weights."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import TINY, cli, write_options
from bootstrap_repro.options import merge

pytestmark = pytest.mark.slow

# A dataset plugin that kills its own process (SIGKILL or SIGTERM) at a chosen hook when
# KILL_AT=hook:epoch[:batch[:signal[:renamed]]] is set; without it, the run is an ordinary one.
# ``renamed``: wait first until the checkpoint in flight is renamed into place, not until its
# deferred directory fsync (Checkpointer.wait(durable=False)).
KILLER = textwrap.dedent("""
    import os, signal
    from bootstrap_repro.datasets import Synthetic

    def factory(engine):
        opt = engine.options['dataset']
        kw = dict(nb_items=opt['nb_items'], nb_classes=opt['nb_classes'], dim=opt['dim'],
                  batch_size=opt['batch_size'], nb_threads=opt['nb_threads'], seed=engine.seed)
        spec = os.environ.get('KILL_AT')
        if spec:
            parts = spec.split(':')
            hook, epoch, batch, sig, then = parts + ['-1', 'SIGKILL', ''][len(parts) - 2:]
            def kill(e):
                if e.epoch == int(epoch) and int(batch) in (-1, e.state.batch):
                    if then == 'renamed':
                        e.checkpointer.wait(durable=False)
                    os.kill(os.getpid(), getattr(signal, sig))
            engine.register_hook(hook, kill)
        return {'train': Synthetic('train', **kw), 'eval': Synthetic('val', **kw)}
""")


def make_options(tmp_path: Path, nb_threads: int) -> Path:
    (tmp_path / "killer_plugin.py").write_text(KILLER)
    tree = merge(TINY, {
        "exp": {"dir": str(tmp_path / "exp")},
        "dataset": {"import": "killer_plugin", "nb_items": 64, "nb_threads": nb_threads},
        "model": {"network": {"dropout": 0.2}},  # dropout draws from the global RNG: resume must restore it
        "engine": {"nb_epochs": 5},
    })
    return write_options(tmp_path / "options.yaml", tree)


def outputs(exp: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    logs = json.loads((exp / "logs.json").read_text())
    weights = {n: torch.load(exp / f"ckpt_{n}_model.pth.tar", weights_only=True) for n in ("last", "best_loss", "best_acctop1")}
    return logs, weights


def assert_identical(a, b):
    logs_a, w_a = a
    logs_b, w_b = b
    assert logs_a == logs_b
    for name in w_a:
        assert w_a[name].keys() == w_b[name].keys()
        for k in w_a[name]:
            assert torch.equal(w_a[name][k], w_b[name][k]), (name, k)


@pytest.fixture(scope="module", params=[0, 2], ids=["threads0", "threads2"])
def reference(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"ref{request.param}")
    f = make_options(tmp, request.param)
    r = cli("run", "-o", str(f), env={"PYTHONPATH": str(tmp)})
    assert r.returncode == 0, r.stderr
    return request.param, outputs(tmp / "exp")


@pytest.mark.parametrize("kill_at", [
    "train_on_start_batch:2:1",  # in the middle of epoch 3 of 5
    "train_on_flush:2",  # epoch 3's train values are in logs.json, its checkpoint is not written
    "engine_on_checkpoint:3",  # while the checkpoints of epoch 3 are being written in the background
    "engine_on_checkpoint:3:-1:SIGKILL:renamed",  # epoch 3's files renamed in, their directory fsync deferred
])
def test_kill9_then_resume_is_bit_identical(tmp_path, reference, kill_at):
    nb_threads, expected = reference
    f = make_options(tmp_path, nb_threads)
    env = {"PYTHONPATH": str(tmp_path)}
    r = cli("run", "-o", str(f), env={**env, "KILL_AT": kill_at})
    assert r.returncode == -9, r.stderr
    exp = tmp_path / "exp"
    json.loads((exp / "logs.json").read_text())  # valid JSON after the kill
    if kill_at.endswith(":renamed"):  # the state between the renames and the deferred fsync
        assert len(list(exp.glob("ckpt.*.commit"))) == 1 and not list(exp.glob("*.staged"))
        assert torch.load(exp / "ckpt_last_engine.pth.tar", weights_only=True)["resume_epoch"] == 3
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", env=env)
    assert r.returncode == 0, r.stderr
    assert_identical(outputs(exp), expected)


def test_sigterm_interrupts_cleanly_and_resumes(tmp_path, reference):
    nb_threads, expected = reference
    f = make_options(tmp_path, nb_threads)
    env = {"PYTHONPATH": str(tmp_path)}
    r = cli("run", "-o", str(f), env={**env, "KILL_AT": "train_on_start_batch:1:1:SIGTERM"})
    assert r.returncode == 130, r.stderr
    assert "interrupted; resume with: bootstrap-repro run -o" in r.stderr
    exp = tmp_path / "exp"
    assert json.loads((exp / "logs.json").read_text())["train_epoch.epoch"] == [0]
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", env=env)
    assert r.returncode == 0, r.stderr
    assert_identical(outputs(exp), expected)


def test_resume_with_more_epochs_saves_the_override(tmp_path):
    f = make_options(tmp_path, 0)
    env = {"PYTHONPATH": str(tmp_path)}
    assert cli("run", "-o", str(f), "--engine.nb_epochs", "2", env=env).returncode == 0
    exp = tmp_path / "exp"
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "3", env=env)
    assert r.returncode == 0, r.stderr
    saved = (exp / "options.yaml").read_text()
    assert "nb_epochs: 3" in saved and "resume: null" in saved
    assert json.loads((exp / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]


def test_eval_only_run_evaluates_best_checkpoint(tmp_path):
    f = make_options(tmp_path, 0)
    env = {"PYTHONPATH": str(tmp_path)}
    assert cli("run", "-o", str(f), "--engine.nb_epochs", "3", env=env).returncode == 0
    exp = tmp_path / "exp"
    logs = json.loads((exp / "logs.json").read_text())
    options_before = (exp / "options.yaml").read_text()
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_acctop1", "--dataset.train_split", "",
            env=env)
    assert r.returncode == 0, r.stderr
    eval_logs = json.loads((exp / "logs_eval_val.json").read_text())
    best = max(range(3), key=lambda i: (logs["eval_epoch.acctop1"][i], -i))
    assert eval_logs["eval_epoch.acctop1"] == [logs["eval_epoch.acctop1"][best]]
    assert eval_logs["eval_epoch.loss"] == [logs["eval_epoch.loss"][best]]
    assert (exp / "options.yaml").read_text() == options_before
    assert json.loads((exp / "logs.json").read_text()) == logs
