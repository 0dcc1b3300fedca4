"""A short kill -9 soak (benchmarks/kill_soak.py): random kills, each resumed, all bitwise equal to the reference."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_soak.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("kill_soak", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_soak", module)  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_random_kills_resume_bitwise_equal(tmp_path):
    ks = load_benchmark()
    lines: list[str] = []
    # 2 kill points per nb_threads setting (the main pid, then the process group), a fixed kill-time seed and
    # a small run (2 epochs): ~10 runs of the CLI, each ~4 s of CPU (mostly imports), keep it under a minute
    # on 2 cores.  `python benchmarks/kill_soak.py` runs the full soak (50 kill points).
    result = ks.soak(4, seed=1, nb_threads=(0, 2), config=ks.Config(nb_epochs=2, nb_items=64),
                     work=tmp_path, check_reference=False, print_fn=lines.append)
    report = "\n".join(result.report())
    assert not result.errors, report
    assert len(result.kills) == 4, report
    assert [p.nb_threads for p in result.kills] == [0, 0, 2, 2]
    assert [p.mode for p in result.kills] == ["main", "group"] * 2
    assert not result.failed, report + "\n" + "\n".join(lines)
    assert result.summary() == "kill -9 soak: 4 kill points (nb_threads 0: 2, 2: 2), 4 resumed, 4 bitwise equal, 0 failed"


def test_differences_sees_one_flipped_bit(tmp_path):
    """The comparison is bitwise: one ulp in one weight, or one logs.json value, is a difference."""
    import torch

    ks = load_benchmark()
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    ref = ({"train_epoch.loss": [0.5, 0.25]}, {"ckpt_last_model.pth.tar": {"w": w, "n": torch.tensor([float("nan")])}})
    same = ({"train_epoch.loss": [0.5, 0.25]}, {"ckpt_last_model.pth.tar": {"w": w.clone(), "n": torch.tensor([float("nan")])}})
    assert ks.differences(ref, same) == []
    bumped = w.clone()
    bumped[1, 2] = torch.nextafter(bumped[1, 2], torch.tensor(2.0))
    got = ({"train_epoch.loss": [0.5, 0.25000000000000006]}, {"ckpt_last_model.pth.tar": {"w": bumped, "n": torch.tensor([float("nan")])}})
    diffs = ks.differences(ref, got)
    assert len(diffs) == 2 and "train_epoch.loss" in diffs[0] and "['w']" in diffs[1], diffs
    assert ks.differences(ref, (ref[0], {})) == ["checkpoint files: only in reference ['ckpt_last_model.pth.tar'], only in resumed []"]


@pytest.mark.parametrize(("label", "stderr", "step"), [
    ("resume", "error: DIR/options.yaml: options file not found; check the path", "fresh"),
    ("resume", "error: exp.resume: 'last' asked but exp.dir DIR does not exist; check --exp.dir", "fresh"),
    ("resume", ("error: DIR/options.yaml: not found; the run in DIR stopped before it saved its options: train it "
                "from the start with your options file (-o YOURS.yaml --exp.dir DIR --exp.resume last), or remove "
                "it (rm -r DIR)"), "own+resume"),
    ("resume", "error: exp.resume: no checkpoint 'last' in DIR (found: none); use --exp.resume last or best_<metric>",
     "fresh"),
    ("fresh", ("error: exp.dir: DIR holds a run that ended before its first checkpoint (see its logs.txt); remove "
               "it (rm -r DIR) or choose a new --exp.dir"), "rm+fresh"),
    ("fresh", ("error: exp.dir: DIR holds a run that stopped before its first checkpoint; train it from the start "
               "there with --exp.resume last, remove it (rm -r DIR), or choose a new --exp.dir"), "own+resume"),
    ("resume", "error: run failed (ValueError: boom); see DIR/logs.txt", None),
])
def test_next_step_follows_the_message(label, stderr, step):
    assert load_benchmark().next_step(label, stderr) == step
