"""``rerun --verify``'s comparison: every value, the earliest divergence, the environment fields that differ."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest

from bootstrap_repro.record import OutputComparison, RecordError, compare_logs, compare_outputs, environment_differences

LOGS = {
    "train_batch.loss": [2.0, 1.5, 1.2, 1.0],  # 2 batches per epoch
    "train_epoch.epoch": [0, 1],
    "train_epoch.loss": [1.75, 1.1],
    "eval_epoch.epoch": [0, 1],
    "eval_epoch.acctop1": [50.0, 75.0],
}


def changed(key: str, index: int, value):
    logs = {k: list(v) for k, v in LOGS.items()}
    logs[key][index] = value
    return logs


def test_identical_counts_every_value():
    cmp = compare_logs(LOGS, {k: list(v) for k, v in LOGS.items()})
    assert (cmp.identical, cmp.keys, cmp.divergence) == (12, 5, None)


def test_first_divergence_is_the_earliest_epoch():
    rerun = changed("eval_epoch.acctop1", 1, 80.0)
    rerun["train_batch.loss"][3] = 0.9  # epoch 1, batch 1: same epoch, batch values come first
    rerun["train_epoch.loss"][1] = 1.2
    d = compare_logs(LOGS, rerun).divergence
    assert (d.key, d.index, d.epoch, d.original, d.rerun) == ("train_batch.loss", 3, 1, 1.0, 0.9)
    assert d.describe() == "train_batch.loss[3] (epoch 1): 1.0 (original) vs 0.9 (rerun)"
    d = compare_logs(LOGS, changed("eval_epoch.acctop1", 0, 51.0)).divergence
    assert d.describe() == "eval_epoch.acctop1[0] (epoch 0): 50.0 (original) vs 51.0 (rerun)"


def test_missing_values_keys_and_types():
    short = {k: list(v) for k, v in LOGS.items()}
    short["train_epoch.loss"] = [1.75]
    assert compare_logs(LOGS, short).divergence.describe() == "train_epoch.loss[1] (epoch 1): 1.1 (original) vs missing (rerun)"
    extra = {**LOGS, "train_epoch.new": [1.0, 2.0]}
    assert compare_logs(LOGS, extra).divergence.describe() == "train_epoch.new[0] (epoch 0): missing (original) vs 1.0 (rerun)"
    assert compare_logs(LOGS, changed("train_epoch.epoch", 0, 0.0)).divergence.key == "train_epoch.epoch"  # int vs float
    nan = {"a": [float("nan")]}
    assert compare_logs(nan, {"a": [float("nan")]}).identical == 1


def test_ignore_patterns():
    rerun = changed("train_epoch.loss", 0, 9.9)
    cmp = compare_logs(LOGS, rerun, ignore=["train_epoch.*"])
    assert cmp.divergence is None and cmp.identical == 8


def test_environment_differences(tmp_path):
    def record(python, host, pkg, omp):
        return {"environment": {"python": {"version": python, "implementation": "CPython"}, "host": host,
                                "torch": {"version": "2.13.0", "cuda": None}, "packages": {"sha256": pkg},
                                "framework": {"version": "0.1.0", "sha256": "f"}, "env_vars": omp},
                "runtime": {"kind": "local"}}

    a, b = tmp_path / "a", tmp_path / "b"
    for d, text in ((a, "numpy==1.26.4\ntorch==2.13.0\n"), (b, "numpy==2.0.0\ntorch==2.13.0\nnew==1\n")):
        (d / "repro").mkdir(parents=True)
        (d / "repro" / "packages.txt").write_text(text)
    same = record("3.11.7", "h", "p1", {})
    assert environment_differences(same, same, a, a) == []
    diffs = environment_differences(record("3.11.7", "h", "p1", {"OMP_NUM_THREADS": "1"}),
                                    record("3.12.1", "h2", "p2", {}), a, b)
    assert diffs == ["python.version: 3.11.7 -> 3.12.1", "host: h -> h2", "$OMP_NUM_THREADS: 1 -> None",
                     "packages: new (none) -> 1, numpy 1.26.4 -> 2.0.0"]


# ----------------------------------------------------------------------------- compare_outputs
def _save_run(d, *, stamp=1.0, momentum=0.5, eval_acc=50.0, links=True):
    """An experiment-like dir: logs.json, logs_eval.json and the three parts of ckpt_last (+ ckpt_best_loss)."""
    import torch

    d.mkdir()
    (d / "logs.json").write_text(json.dumps(LOGS))
    (d / "logs_eval.json").write_text(json.dumps({"eval_epoch.epoch": [0], "eval_epoch.acctop1": [eval_acc]}))
    parts = {
        "model": OrderedDict([("layer.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
                              ("layer.bias", torch.tensor([0.5, float("nan")])),
                              ("stamp", torch.tensor([stamp], dtype=torch.float64))]),
        "optimizer": {"optimizer": {"state": {0: {"momentum_buffer": torch.full((2, 3), momentum)}},
                                    "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]}, "scheduler": None},
        "engine": {"format": 1, "epoch": 2, "rng": {"torch": torch.zeros(4, dtype=torch.uint8), "python": (3, (1, 2), None)}},
    }
    for part, state in parts.items():
        torch.save(state, d / f"ckpt_last_{part}.pth.tar")
        if links:
            os.link(d / f"ckpt_last_{part}.pth.tar", d / f"ckpt_best_loss_{part}.pth.tar")
        else:
            torch.save(state, d / f"ckpt_best_loss_{part}.pth.tar")
    return d


#: tensors per checkpoint group: model 3, optimizer 1, engine 1
GROUP_TENSORS = 5


def test_outputs_identical_count_everything(tmp_path):
    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b", links=False)
    cmp = compare_outputs(a, b)
    assert cmp == OutputComparison(values=14, log_files=2, tensors=2 * GROUP_TENSORS, checkpoints=6, divergence=None)
    assert cmp.summary() == "14 values identical (2 logs files), 10 tensors identical (6 checkpoint files)"


def test_a_weights_only_difference_names_file_and_tensor(tmp_path):
    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b", stamp=1234.5)
    cmp = compare_outputs(a, b)
    assert cmp.divergence == "ckpt_last_model.pth.tar: tensor 'stamp' differs (shape [1], float64; max abs diff 1.2e+03)"
    assert (cmp.values, cmp.tensors) == (14, 2 * (GROUP_TENSORS - 1))  # the logs agree: only the weights tell


def test_one_element_of_a_weight(tmp_path):
    import torch

    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")
    state = torch.load(b / "ckpt_last_model.pth.tar", weights_only=True)
    state["layer.weight"][1, 2] = torch.nextafter(state["layer.weight"][1, 2], torch.tensor(10.0))
    torch.save(state, b / "ckpt_last_model.pth.tar")  # a new file: the best_loss link keeps the old weights
    assert compare_outputs(a, b).divergence == \
        "ckpt_last_model.pth.tar: tensor 'layer.weight' differs (shape [2, 3], float32; max abs diff 4.8e-07)"


def test_optimizer_state_tensor(tmp_path):
    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b", momentum=0.25)
    assert compare_outputs(a, b).divergence == ("ckpt_last_optimizer.pth.tar: tensor 'optimizer.state.0.momentum_buffer' "
                                                "differs (shape [2, 3], float32; max abs diff 0.25)")


def test_missing_checkpoint_file_and_keys(tmp_path):
    import torch

    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")
    (b / "ckpt_best_loss_optimizer.pth.tar").unlink()
    cmp = compare_outputs(a, b)
    assert cmp.divergence == "ckpt_best_loss_optimizer.pth.tar: missing in the rerun" and cmp.checkpoints == 6
    (a / "ckpt_best_loss_optimizer.pth.tar").unlink()
    (b / "ckpt_last_engine.pth.tar").unlink()
    torch.save({"format": 1, "epoch": 2, "rng": {"torch": torch.zeros(4, dtype=torch.uint8), "python": (3, (1, 2), None)},
                "extra": 1}, b / "ckpt_last_engine.pth.tar")
    assert compare_outputs(a, b).divergence == "ckpt_last_engine.pth.tar: 'extra' missing in the original"


def test_dtype_and_non_tensor_values(tmp_path):
    import torch

    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")
    state = torch.load(b / "ckpt_last_model.pth.tar", weights_only=True)
    state["layer.weight"] = state["layer.weight"].double()
    torch.save(state, b / "ckpt_last_model.pth.tar")
    assert compare_outputs(a, b).divergence == \
        "ckpt_last_model.pth.tar: tensor 'layer.weight' differs (dtype float32 (original) vs float64 (rerun))"
    engine = torch.load(a / "ckpt_last_engine.pth.tar", weights_only=True)
    engine["rng"]["python"] = (3, (1, 5), None)
    torch.save(engine, b / "ckpt_last_engine.pth.tar")
    assert compare_outputs(a, b).divergence == "ckpt_last_engine.pth.tar: 'rng.python[1][1]': 2 (original) vs 5 (rerun)"


def test_nan_equals_nan_but_not_a_number(tmp_path):
    import torch

    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")  # layer.bias holds a NaN in both
    assert compare_outputs(a, b).divergence is None
    state = torch.load(b / "ckpt_last_model.pth.tar", weights_only=True)
    state["layer.bias"][1] = 0.0
    torch.save(state, b / "ckpt_last_model.pth.tar")
    assert compare_outputs(a, b).divergence == \
        "ckpt_last_model.pth.tar: tensor 'layer.bias' differs (shape [2], float32; max abs diff nan)"
    state["layer.bias"] = torch.tensor([-0.0, 0.5])
    torch.save(state, b / "ckpt_last_model.pth.tar")
    state["layer.bias"] = torch.tensor([0.0, 0.5])
    os.unlink(a / "ckpt_last_model.pth.tar")
    torch.save(state, a / "ckpt_last_model.pth.tar")
    assert compare_outputs(a, b).divergence == ("ckpt_last_model.pth.tar: tensor 'layer.bias' differs (shape [2], float32; "
                                                "equal values, different bits (-0.0 or NaN payloads))")


def test_a_second_logs_file_differing_and_missing(tmp_path):
    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b", eval_acc=51.0, stamp=2.0)
    cmp = compare_outputs(a, b)  # logs come before checkpoints
    assert cmp.divergence == "logs_eval.json: eval_epoch.acctop1[0] (epoch 0): 50.0 (original) vs 51.0 (rerun)"
    assert compare_outputs(a, b, ignore=["eval_epoch.acc*"]).divergence.startswith("ckpt_last_model.pth.tar: tensor 'stamp'")
    (b / "logs.json").write_text(json.dumps(changed("train_batch.loss", 3, 0.9)))
    assert compare_outputs(a, b).divergence == "logs.json: train_batch.loss[3] (epoch 1): 1.0 (original) vs 0.9 (rerun)"
    (a / "logs.json").unlink()
    cmp = compare_outputs(a, b)
    assert cmp.divergence == "logs.json: missing in the original" and cmp.log_files == 2


def test_hard_linked_checkpoints_are_read_once(tmp_path, monkeypatch):
    from bootstrap_repro.engines import _checkpoint

    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")
    read = []
    load = _checkpoint._load
    monkeypatch.setattr(_checkpoint, "_load", lambda path, where: read.append(Path(path).name) or load(path, where))
    cmp = compare_outputs(a, b)
    assert cmp.tensors == 2 * GROUP_TENSORS and cmp.divergence is None
    assert sorted(read) == sorted(2 * [f"ckpt_last_{p}.pth.tar" for p in ("engine", "model", "optimizer")])


def test_a_damaged_checkpoint_is_an_error(tmp_path):
    a, b = _save_run(tmp_path / "a"), _save_run(tmp_path / "b")
    (b / "ckpt_last_model.pth.tar").unlink()
    (b / "ckpt_last_model.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(RecordError, match=r"ckpt_last_model.pth.tar: cannot be read .*; the experiment dir is damaged"):
        compare_outputs(a, b)


STAMPED = """
import time
import torch


class Stamped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(8, 4)
        self.register_buffer("stamp", torch.tensor([time.time()], dtype=torch.float64))  # never logged

    def forward(self, x):
        return torch.log_softmax(self.body(x), dim=-1)


def factory(engine):
    return Stamped()
"""


@pytest.mark.slow
def test_real_runs_a_stamped_buffer_is_caught_and_a_deterministic_net_is_identical(tiny_options, plugin, tmp_path):
    from bootstrap_repro.run import run

    def twice(tag: str, changes: dict | None = None) -> OutputComparison:
        dirs = [tmp_path / f"{tag}-1", tmp_path / f"{tag}-2"]
        for d in dirs:
            with open(os.devnull, "w") as quiet:
                result = run(tiny_options(changes, ["--exp.dir", str(d)]), handle_signals=False, stream=quiet, cache=False)
            assert result.status == "COMPLETED"
        return compare_outputs(*dirs)

    same = twice("mlp")
    assert same.divergence is None and same.values > 0 and same.log_files == 1
    assert same.checkpoints == 9 and same.tensors >= 9 * 1  # last, best_loss, best_acctop1; three parts each
    stamped = twice("stamped", {"model": {"network": {"import": plugin(STAMPED)}}})
    assert stamped.values > 0 and stamped.checkpoints == 9  # the logs agree: only the weights tell
    assert stamped.divergence is not None and stamped.divergence.startswith(
        "ckpt_last_model.pth.tar: tensor 'network.stamp' differs (shape [1], float64; max abs diff "), stamped.divergence


def test_engine_files_of_both_formats_compare_by_their_generators(tmp_path):
    """A rerun by a newer bootstrap-repro writes the RNG words as bytes (engine file format 2) where the original
    holds lists of ints (format 1): the same generators are identical, other generators differ."""
    import random

    import torch

    from bootstrap_repro.engines._checkpoint import rng_state

    random.seed(1)
    new = rng_state()
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = __import__("numpy").random.get_state()
    old = {**new, "python": (version, list(words), gauss), "numpy": (name, keys.tolist(), pos, has_gauss, cached)}
    for d, rng, fmt in ((tmp_path / "a", old, 1), (tmp_path / "b", new, 2)):
        d.mkdir()
        torch.save({"epoch": 3, "resume_epoch": 3, "format": fmt, "rng": rng}, d / "ckpt_last_engine.pth.tar")
    got = compare_outputs(tmp_path / "a", tmp_path / "b")
    assert got.divergence is None, got.divergence
    random.random()  # another generator state: a real difference
    torch.save({"epoch": 3, "resume_epoch": 3, "format": 2, "rng": rng_state()}, tmp_path / "b" / "ckpt_last_engine.pth.tar")
    got = compare_outputs(tmp_path / "a", tmp_path / "b")
    assert got.divergence is not None and "rng.python" in got.divergence, got.divergence
