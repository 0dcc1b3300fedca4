"""The command line: bad input gives one line, exit 2, nothing created; run/view/compare work."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from bootstrap_repro.cli import main

from conftest import TINY, cli, write_options
from bootstrap_repro.options import merge


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    d = tmp_path / "plugins"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    return d


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys, tmp_path, argv, expected, before=None):
    before = snapshot(tmp_path) if before is None else before
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"error: {expected}"
    assert snapshot(tmp_path) == before, "bad input must not create files"


def test_missing_options_file(capsys, tmp_path):
    missing = str(tmp_path / "missing.yaml")
    assert_bad_input(capsys, tmp_path, ["run", "-o", missing], f"{missing}: options file not found; check the path")


def test_no_options_flag(capsys, tmp_path):
    assert_bad_input(capsys, tmp_path, ["run"],
                     "run: -o OPTIONS.yaml is required (e.g. bootstrap-repro run -o examples/digits/options.yaml)")


def test_yaml_syntax_include_and_cycle(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exp:\n  dir: x\n   nb: 1\n")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(bad)],
                     f"{bad}:3:6: YAML syntax error: mapping values are not allowed in this context; fix the file")
    inc = tmp_path / "inc.yaml"
    inc.write_text("__include__: base.yaml\n")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(inc)],
                     f"{inc}: __include__ 'base.yaml' not found (looked for {tmp_path / 'base.yaml'}); "
                     "includes are relative to the including file")
    (tmp_path / "c1.yaml").write_text("__include__: c2.yaml\n")
    (tmp_path / "c2.yaml").write_text("__include__: c1.yaml\n")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tmp_path / "c1.yaml")],
                     f"{(tmp_path / 'c2.yaml').resolve()}: __include__ cycle c1.yaml -> c2.yaml -> c1.yaml; "
                     "remove one of these includes")


def test_unknown_key_and_wrong_type(capsys, tmp_path, tiny_file):
    f = str(tiny_file())
    assert_bad_input(capsys, tmp_path, ["run", "-o", f, "--optimizer.lrr", "0.1"],
                     "--optimizer.lrr: unknown option; did you mean --optimizer.lr? (`-h` lists them all)")
    assert_bad_input(capsys, tmp_path, ["run", "-o", f, "--engine.nb_epochs", "ten"],
                     "--engine.nb_epochs: expected an int, got 'ten'")


@pytest.mark.parametrize("changes, expected", [
    ({"model": {"network": {"name": "resnet9000"}}},
     "model.network.name: unknown name 'resnet9000' (valid: lenet, mlp; or set model.network.import to a module with a factory)"),
    ({"model": {"criterion": {"name": "nl"}}},
     "model.criterion.name: unknown name 'nl'; did you mean nll? (valid: bce, cross_entropy, nll; or set model.criterion.import to a module with a factory)"),
    ({"model": {"metric": {"name": "acc"}}},
     "model.metric.name: unknown name 'acc' (valid: accuracy; or set model.metric.import to a module with a factory)"),
    ({"optimizer": {"name": "sgdd"}},
     "optimizer.name: unknown name 'sgdd'; did you mean sgd? (valid: adam, adamw, sgd; or set optimizer.import to a module with a factory)"),
    ({"engine": {"saving_criteria": ["acctop7:max"]}},
     "engine.saving_criteria: 'acctop7' is never logged (eval_epoch has: acctop1, acctop2, loss); use one of those names"),
])
def test_unknown_component_names(capsys, tmp_path, tiny_file, changes, expected):
    f = str(tiny_file(changes))
    assert_bad_input(capsys, tmp_path, ["run", "-o", f], expected)


def test_import_module_missing_or_without_factory(capsys, tmp_path, tiny_file, plugin_dir):
    f = str(tiny_file({"dataset": {"import": "no_such_plugin_mod"}}))
    code, _, err = run_cli(capsys, "run", "-o", f)
    assert code == 2
    assert err.startswith("error: dataset.import: module 'no_such_plugin_mod' not found (sys.path starts with ")
    assert err.rstrip().endswith("check the name or make it importable (pip install -e, PYTHONPATH)")
    (plugin_dir / "plugin_without_factory.py").write_text("def build():\n    pass\n")
    before = snapshot(tmp_path)
    f = str(tiny_file({"model": {"network": {"import": "plugin_without_factory"}}}, name="o2.yaml"))
    before |= {"o2.yaml"}
    assert_bad_input(capsys, tmp_path, ["run", "-o", f],
                     "model.network.import: module 'plugin_without_factory' has no callable 'factory'; "
                     f"define `def factory(...)` in {plugin_dir / 'plugin_without_factory.py'}", before=before)


def test_unknown_hook_from_plugin(capsys, tmp_path, tiny_file, plugin_dir):
    (plugin_dir / "plugin_bad_hook.py").write_text(textwrap.dedent("""
        def factory(engine):
            engine.register_hook('train_on_updat', lambda: None)
            return {}
    """))
    f = str(tiny_file({"dataset": {"import": "plugin_bad_hook"}}))
    assert_bad_input(capsys, tmp_path, ["run", "-o", f],
                     "unknown hook 'train_on_updat'; did you mean train_on_update? "
                     "(valid: bootstrap_repro.engines.HOOKS, e.g. train_on_end_epoch, eval_on_end_epoch)")


def test_existing_dir_and_resume_without_checkpoint(capsys, tmp_path, tiny_file):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "notes.txt").write_text("mine")
    f = str(tiny_file())
    assert_bad_input(capsys, tmp_path, ["run", "-o", f],
                     f"exp.dir: {exp} already exists; resume it with --exp.resume last (or best_<metric>), "
                     "or choose a new --exp.dir")
    assert_bad_input(capsys, tmp_path, ["run", "-o", f, "--exp.resume", "best_acctop1"],
                     f"exp.resume: no checkpoint 'best_acctop1' in {exp} (found: none); "
                     "use --exp.resume last or best_<metric>")


def test_help_lists_options_and_creates_nothing(capsys, tmp_path, tiny_file):
    f = str(tiny_file())
    before = snapshot(tmp_path)
    code, out, _ = run_cli(capsys, "run", "-o", f, "-h", "--optimizer.lr", "0.5")
    assert code == 0
    assert "--optimizer.lr" in out and "0.5" in out and "--dataset.nb_items" in out
    assert snapshot(tmp_path) == before


def test_run_view_compare_end_to_end(tmp_path, tiny_file):
    f = tiny_file({"view": ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:eval_epoch.acctop1"]})
    a, b = tmp_path / "a", tmp_path / "b"
    r = cli("run", "-o", str(f), "--exp.dir", str(a))
    assert r.returncode == 0, r.stderr
    r = cli("run", "-o", str(f), "--exp.dir", str(b), "--optimizer.lr", "0.001")
    assert r.returncode == 0, r.stderr
    for d in (a, b):
        assert {"options.yaml", "logs.json", "logs.txt", "view.html", "ckpt_last_model.pth.tar"} <= set(os.listdir(d))
    (a / "view.html").unlink()
    r = cli("view", str(a))
    assert r.returncode == 0 and (a / "view.html").exists(), r.stderr
    r = cli("compare", str(a), str(b), "--metric", "eval_epoch.loss:min")
    assert r.returncode == 0, r.stderr
    best = {d: min(json.loads((d / "logs.json").read_text())["eval_epoch.loss"]) for d in (a, b)}
    ranked = [line.split()[1] for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert ranked == [str(d) for d in sorted(best, key=best.get)]
    # the subprocess's bad input: one line on stderr, no traceback, exit 2
    r = cli("run", "-o", str(f), "--exp.dir", str(a), "--optimizer.lr", "0.5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_training_without_optimizer_section(capsys, tmp_path, tiny_file):
    tree = yaml.safe_load(tiny_file().read_text())
    del tree["optimizer"]
    f = write_options(tmp_path / "noopt.yaml", tree)
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(f)],
                     "optimizer: a training run needs an optimizer section (e.g. optimizer: {name: adam, lr: 0.001}); "
                     "for an eval-only run set --dataset.train_split ''")


def test_dir_of_a_run_that_never_checkpointed(capsys, tmp_path, tiny_file):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "options.yaml").write_text("exp: {dir: x}\n")
    (exp / "logs.txt").write_text("[E ...] Run failed\n")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file())],
                     f"exp.dir: {exp} holds a run that stopped before its first checkpoint (see its logs.txt); "
                     f"train it from the start there with --exp.resume last, remove it (rm -r {exp}), "
                     f"or choose a new --exp.dir")


def test_bad_input_under_torchrun_fails_once_before_launch(tmp_path, tiny_file):
    r = cli("run", "-o", str(tiny_file()), "--nproc-per-node", "2", "--model.network.name", "nope")
    assert r.returncode == 2
    assert r.stderr == ("error: model.network.name: unknown name 'nope' (valid: lenet, mlp; "
                        "or set model.network.import to a module with a factory)\n")
    assert not (tmp_path / "exp").exists()


def test_same_command_twice_is_up_to_date(tmp_path, tiny_file):
    f = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert cli("run", "-o", f).returncode == 0
    before = (tmp_path / "exp" / "logs.json").read_bytes()
    r = cli("run", "-o", f)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"up to date: {tmp_path / 'exp'} already holds this experiment, completed (key ")
    assert (tmp_path / "exp" / "logs.json").read_bytes() == before
    r = cli("run", "-o", f, "--optimizer.lr", "0.05")  # another experiment: the dir is taken
    assert r.returncode == 2 and "already exists" in r.stderr
