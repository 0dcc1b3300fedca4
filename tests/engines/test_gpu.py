"""GPU-only checks: they run where CUDA is present and skip elsewhere (never needed by CI)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import cli

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


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
