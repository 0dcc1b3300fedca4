"""Shared fixtures: tiny experiments on the synthetic dataset (milliseconds on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap_repro.options import Options, merge

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"

TINY: dict[str, Any] = {
    "exp": {"dir": None},
    "misc": {"seed": 7},
    "dataset": {
        "name": "synthetic", "train_split": "train", "eval_split": "val",
        "nb_items": 48, "nb_classes": 4, "dim": 8, "batch_size": 16, "nb_threads": 0,
    },
    "model": {
        "name": "simple",
        "network": {"name": "mlp", "input_dim": 8, "hidden": 16, "nb_classes": 4},
        "criterion": {"name": "nll"},
        "metric": {"name": "accuracy", "topk": [1, 2]},
    },
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "engine": {"nb_epochs": 2, "print_freq": 0, "saving_criteria": ["loss:min", "acctop1:max"],
               "progress_bar": False},
    "view": [],
}


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    """No test (nor a module-scoped fixture) reads or fills the user's result cache."""
    saved = {k: os.environ.pop(k, None) for k in ("BOOTSTRAP_REPRO_CACHE_DIR", "BOOTSTRAP_REPRO_NO_CACHE")}
    os.environ["BOOTSTRAP_REPRO_CACHE_DIR"] = str(tmp_path_factory.mktemp("session-cache"))
    yield
    os.environ.pop("BOOTSTRAP_REPRO_CACHE_DIR", None)
    os.environ.update({k: v for k, v in saved.items() if v is not None})


@pytest.fixture(autouse=True)
def _test_cache_dir(tmp_path_factory, monkeypatch):
    """Each test has its own result cache: the same options run in two tests never hit each other's results.

    Within a test, ``run`` uses the cache as it does for users: a test that runs the same
    options twice and needs both to train (a reference, then a killed run) passes --no-cache.
    """
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(path))
    return path


def write_options(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Write a module with a unique name into tmp_path and make it importable; return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"plugin_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        return name

    return write


@pytest.fixture
def tiny_file(tmp_path: Path):
    """``tiny_file(**changes)`` writes a tiny options file (exp.dir under tmp_path) and returns its path."""

    def make(changes: dict[str, Any] | None = None, name: str = "options.yaml") -> Path:
        tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")}})
        if changes:
            tree = merge(tree, changes)
        return write_options(tmp_path / name, tree)

    return make


@pytest.fixture
def tiny_options(tiny_file):
    """``tiny_options(changes, argv)`` → a loaded :class:`Options`."""

    def make(changes: dict[str, Any] | None = None, argv: list[str] | None = None) -> Options:
        return Options.load(tiny_file(changes), argv or [])

    return make


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bootstrap_repro ARGS`` in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "bootstrap_repro", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
