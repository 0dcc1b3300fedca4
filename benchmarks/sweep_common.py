"""Shared by the sweep benchmarks: a tiny synthetic experiment, its sweep file, and timed commands."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

#: The tests' tiny experiment (synthetic blobs, an MLP): a trial is mostly process start-up and imports.
TINY: dict[str, Any] = {
    "exp": {"dir": None},
    "misc": {"seed": 7},
    "dataset": {"name": "synthetic", "train_split": "train", "eval_split": "val", "nb_items": 256, "nb_classes": 4,
                "dim": 8, "batch_size": 16, "nb_threads": 0},
    "model": {"name": "simple", "network": {"name": "mlp", "input_dim": 8, "hidden": 16, "nb_classes": 4},
              "criterion": {"name": "nll"}, "metric": {"name": "accuracy", "topk": [1, 2]}},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "engine": {"nb_epochs": 3, "print_freq": 0, "saving_criteria": ["loss:min"], "progress_bar": False},
    "view": [],
}


def lrs(n: int) -> list[float]:
    """``n`` distinct learning rates (distinct options: no result-cache hit between them)."""
    return [round(0.01 + 0.01 * i, 4) for i in range(n)]


def write_files(root: Path, n: int, jobs: int) -> tuple[Path, Path]:
    """The options file and a sweep file whose ``n`` trials are exactly the ``lrs(n)`` (enqueued, in order)."""
    root.mkdir(parents=True, exist_ok=True)
    opts = root / "tiny.yaml"
    opts.write_text(yaml.safe_dump({**TINY, "exp": {"dir": str(root / "unused")}}, sort_keys=False))
    values = lrs(n)
    sweep = root / f"sweep-{jobs}.yaml"
    sweep.write_text(yaml.safe_dump({
        "sweep": {"options": str(opts), "dir": str(root / f"sweep-{jobs}"), "objective": "eval_epoch.loss",
                  "direction": "minimize", "n_trials": n, "jobs": jobs, "sampler": {"name": "random", "seed": 0}},
        "params": {"optimizer.lr": {"type": "categorical", "choices": values}},
        "enqueue": [{"optimizer.lr": v} for v in values],
    }, sort_keys=False))
    return opts, sweep


def package_copy(tmp: Path) -> Path:
    """A copy of this checkout's package outside any git repo (as an installed package is); returns its parent.

    A run records the git repo of its code (diff, untracked files); from this checkout, the sweep's
    hook module would make each trial snapshot the checkout while a direct run of an options file
    outside any repo snapshots nothing.  From the copy, both record the same (no git state).
    """
    dest = tmp / "pkg"
    shutil.copytree(REPO / "bootstrap_repro", dest / "bootstrap_repro", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def env(cache_dir: Path, package_parent: Path) -> dict[str, str]:
    """The package copy on the path, and a private (empty) result cache."""
    return {**os.environ, "PYTHONPATH": str(package_parent), "BOOTSTRAP_REPRO_CACHE_DIR": str(cache_dir)}


def timed(argv: list[str], environ: dict[str, str]) -> tuple[float, float]:
    """``(wall s, CPU s)`` of ``python -m bootstrap_repro ARGV`` (which must succeed).

    CPU is user + system time of the command and every process it waited for (the trials of a
    sweep): unlike the wall time, it hardly depends on what else the machine runs.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", *argv], env=environ,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"bootstrap-repro {' '.join(argv)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def machine() -> str:
    load = os.getloadavg()
    return f"{len(os.sched_getaffinity(0))} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
