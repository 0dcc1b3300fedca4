"""Helpers of the sweep tests: tiny sweep files over the synthetic dataset, and a look into the study."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from bootstrap_repro.options import merge

from conftest import TINY, cli, write_options

#: lr 0.1 learns, lr 1e-12 does not: a param value that makes trials clearly worse (lr must be > 0).
GOOD_LR, BAD_LR = 0.1, 1e-12


def write_sweep(root: Path, *, sweep: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                options: dict[str, Any] | None = None, enqueue: list[dict[str, Any]] | None = None,
                name: str = "sweep.yaml") -> Path:
    """A sweep file over TINY (options file beside it, sweep dir ``root/sweep``); returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    opts = write_options(root / "tiny.yaml", merge(TINY, merge({"exp": {"dir": str(root / "unused")}}, options or {})))
    doc: dict[str, Any] = {
        "sweep": {"options": str(opts), "dir": str(root / "sweep"), "objective": "eval_epoch.loss",
                  "direction": "minimize", "n_trials": 2, "jobs": 1, "sampler": {"name": "random", "seed": 0},
                  **(sweep or {})},
        "params": params or {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
    }
    if enqueue is not None:
        doc["enqueue"] = enqueue
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sweep_cli(sweep_file: Path, *args: str, **kwargs: Any):
    return cli("sweep", str(sweep_file), *args, **kwargs)


def study_trials(sweep_dir: Path, storage: str | None = None) -> list[Any]:
    """The study's trials, read from its storage (the journal in ``sweep_dir`` by default)."""
    import optuna

    from bootstrap_repro.sweep import storage_for

    marker = json.loads((sweep_dir / "sweep.json").read_text())
    store = storage_for(storage, sweep_dir, marker["study"])
    study = optuna.load_study(study_name=marker["study"], storage=store.open(), sampler=optuna.samplers.RandomSampler())
    trials = study.get_trials()
    store.close()
    return trials


def states(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and stat.rpartition(")")[2].split()[0] != "Z":
            pids.append(int(entry.name))
    return pids
