"""Bad input to ``run``: the cases the hardening issue names, each with its exact one-line error.

Exit code 2, one ``error:`` line, no traceback, nothing created (``assert_bad_input``).
"""

from __future__ import annotations

import time

import pytest

from bootstrap_repro.options import MAX_YAML_DEPTH, MAX_YAML_VALUES

from test_cli import assert_bad_input


@pytest.mark.parametrize("changes, argv, expected", [
    ({"misc": {"seed": "abc"}}, [], "misc.seed: must be a whole number (int), got 'abc' (in options.yaml)"),
    ({"engine": {"nb_epochs": -3}}, [], "engine.nb_epochs: must be >= 1, got -3 (in options.yaml)"),
    ({"engine": {"nb_epochs": 2.0}}, [], "engine.nb_epochs: must be a whole number (int), got 2.0 (in options.yaml)"),
    ({"dataset": {"batch_size": 0}}, [], "dataset.batch_size: must be >= 1, got 0 (in options.yaml)"),
    ({}, ["--optimizer.lr", "-1"], "--optimizer.lr: must be > 0, got -1.0"),
    ({}, ["--optimizer.lr", "nan"], "--optimizer.lr: must be a finite number, got nan"),
    ({"model": {"metric": {"topk": [1, "5"]}}}, [],
     "model.metric.topk[1]: must be a whole number (int), got '5' (in options.yaml)"),
    ({}, ["--engine.nb_epochs"], "--engine.nb_epochs: expected a value after it, e.g. --engine.nb_epochs 2"),
    ({"engine": {"compile": "abc"}}, [], "engine.compile: must be true or false, got 'abc' (in options.yaml)"),
    ({"engine": {"nan_check": 1}}, [], "engine.nan_check: must be true or false, got 1 (in options.yaml)"),
    ({}, ["--engine.compile", "abc"], "--engine.compile: expected a bool (true/false), got 'abc'"),
    ({"engine": {"amp": "fp8"}}, [], "engine.amp: must be one of 'none', 'bf16' or 'fp16', got 'fp8' (in options.yaml)"),
    ({"exp": {"dir": "a\x00b"}}, [], "exp.dir: a path cannot hold a NUL character, got 'a\\x00b' (in options.yaml)"),
    ({"exp": {"dir": "/proc/self/exp"}}, [], "exp.dir: is under a kernel file system (/proc, /sys, /dev); choose a "
                                             "dir on a disk, got '/proc/self/exp' (in options.yaml)"),
    ({"exp": {"dir": 2024}}, [], "exp.dir: must be a string (quote it in YAML), got 2024 (in options.yaml)"),
    ({"dataset": {"import": ".rel"}}, [], "dataset.import: expected an absolute module name like 'my.pkg.module' "
                                          "(no leading dot, no path), got '.rel'"),
    ({"engine": {"hooks": [".."]}}, [], "engine.hooks: '..' is not an absolute module name like 'my.pkg.hooks' "
                                        "(in options.yaml)"),
    ({"engine": [1]}, [], "engine: must be a mapping (key: value), got [1] (in options.yaml)"),
    ({"engine": {"saving_criteria": ["loss"]}}, [],
     "engine.saving_criteria: 'loss' is not NAME:min or NAME:max (e.g. loss:min, acctop1:max) (in options.yaml)"),
    ({"runtime": {"name": "k8s"}}, [], "runtime.name: must be one of 'local', 'docker' or 'slurm', got 'k8s' (in options.yaml)"),
    ({"dataset": {"nb_items": 0}}, [],
     "dataset: the train split (dataset 'synthetic') has no items; check dataset.train_split and the data"),
    ({"model": {"network": {"hidden": -1}}}, [],
     "model.network: network 'mlp' refused its options (Trying to create tensor with negative dimension -1: "
     "[-1, 8]); fix the values under model.network"),
    ({"optimizer": {"name": "adam", "betas": [2, 0.9], "momentum": None}}, [],
     "optimizer: optimizer 'adam' refused its options (Invalid beta parameter at index 0: 2); fix the values "
     "under optimizer"),
])
def test_bad_values_are_one_line_and_create_nothing(capsys, tiny_file, tmp_path, changes, argv, expected):
    opts = tiny_file(changes)
    if "momentum" in str(changes):  # adam has no momentum: drop the tiny options' sgd one
        opts.write_text(opts.read_text().replace("  momentum: 0.9\n", "").replace("  momentum: null\n", ""))
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(opts), *argv], expected)


def test_a_yaml_alias_bomb_is_refused_at_once(capsys, tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*lines, f"exp: {{dir: {tmp_path / 'exp'}}}"]) + "\n")
    start = time.perf_counter()
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(bomb)],
                     f"{bomb}: expands to more than {MAX_YAML_VALUES:,} values; the options file is refused "
                     f"(check its anchors, aliases and nesting)")
    assert time.perf_counter() - start < 5  # 9**9 values once expanded: refused from the node graph


@pytest.mark.parametrize("text, expected", [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", ":1:1003: YAML syntax error: exceeded maximum nesting depth; fix the file"),
    ("a: " + "[" * 300 + "]" * 300 + "\n",
     f": nested more than {MAX_YAML_DEPTH} levels deep; the options file is refused (check its anchors, "
     f"aliases and nesting)"),
])
def test_deep_yaml_is_refused(capsys, tmp_path, text, expected):
    deep = tmp_path / "deep.yaml"
    deep.write_text(text)
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(deep)], f"{deep}{expected}")


def test_a_symlink_loop_as_options_file(capsys, tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    loop = tmp_path / "a.yaml"
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(loop)],
                     f"{loop}: cannot read options file ([Errno 40] Too many levels of symbolic links: '{loop}')")


def test_a_hook_plugin_whose_register_raises_leaves_no_exp_dir(capsys, tiny_file, tmp_path, monkeypatch):
    (tmp_path / "raisinghooks.py").write_text("def register(engine):\n    raise ValueError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = tiny_file({"engine": {"hooks": ["raisinghooks"]}})
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(opts)],
                     "engine.hooks[0]: raisinghooks.register(engine) raised ValueError: boom (raisinghooks.py:2); "
                     "fix the plugin")


def test_an_exp_dir_that_cannot_be_made(capsys, tiny_file, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    opts = str(tiny_file())
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--exp.dir", str(afile / "sub")],
                     f"exp.dir: cannot create {afile / 'sub'} (Not a directory); choose a --exp.dir in a writable "
                     f"directory")
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--exp.dir", str(afile)],
                     f"exp.dir: {afile} is a file, not a directory; choose another --exp.dir")


def test_a_fifo_as_options_file_is_refused_at_once(capsys, tmp_path):
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(fifo)], f"{fifo}: not a regular file; give a YAML options file")
