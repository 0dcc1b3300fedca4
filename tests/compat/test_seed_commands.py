"""The seed's command lines: ``python -m bootstrap_repro.run``, ``--path_opts``, the seed's ``compare``, ``new``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap_repro.cli import main

from conftest import REPO, cli


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def python_m(module: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


# ----------------------------------------------------------------------------- run
def test_python_m_bootstrap_repro_run_runs(tmp_path, tiny_file):
    f = tiny_file()
    r = python_m("bootstrap_repro.run", "-o", str(f), "--engine.nb_epochs", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "exp" / "logs.json").read_text())["train_epoch.epoch"] == [0]
    r = python_m("bootstrap_repro.run")
    assert r.returncode == 2 and r.stderr == (
        "error: run: -o OPTIONS.yaml is required (e.g. bootstrap-repro run -o examples/digits/options.yaml)\n")


def test_path_opts_is_o(capsys, tmp_path, tiny_file):
    f = tiny_file()
    code, _, err = run_cli(capsys, "run", "--path_opts", str(f), "--engine.nb_epochs", "1")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "run", f"--path_opts={tmp_path / 'exp' / 'options.yaml'}", "-h")
    assert code == 0 and "--engine.nb_epochs" in out


# ----------------------------------------------------------------------------- compare
def exp_dir(path: Path, loss: list[float], acc: list[float]) -> Path:
    """A dir as bootstrap.pytorch left it (its metric names)."""
    path.mkdir()
    n = len(loss)
    (path / "logs.json").write_text(json.dumps({
        "train_epoch.epoch": list(range(n)), "train_epoch.loss": [v + 0.5 for v in loss],
        "eval_epoch.epoch": list(range(n)), "eval_epoch.loss": loss, "eval_epoch.accuracy_top1": acc,
    }))
    return path


def ranked(out: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split()[1:4]) for line in out.splitlines() if line.strip()[:1].isdigit()]


def test_compare_takes_the_seeds_arguments(capsys, tmp_path):
    a = exp_dir(tmp_path / "a", loss=[0.9, 0.5, 0.7], acc=[60.0, 70.0, 90.0])
    b = exp_dir(tmp_path / "b", loss=[0.8, 0.6, 0.4], acc=[65.0, 80.0, 85.0])
    seed_form = ["compare", "-d", str(a), str(b), "-m", "logs", "eval_epoch.accuracy_top1", "max",
                 "-m", "logs", "eval_epoch.loss", "min"]
    code, out, err = run_cli(capsys, *seed_form)
    assert code == 0, err
    assert ranked(out) == [(str(a), "2", "90"), (str(b), "2", "85"), (str(b), "2", "0.4"), (str(a), "1", "0.5")]
    # the same with the native spelling, the two-word form, and NAME:DIR rows
    # and the older saving-criterion words (gt = max, lt = min), as copied from an options file
    for argv in (["compare", str(a), str(b), "-m", "eval_epoch.accuracy_top1:max", "-m", "eval_epoch.loss:min"],
                 ["compare", str(a), "-d", str(b), "-m", "eval_epoch.acctop1", "max", "-m", "logs:eval_epoch.loss:min"],
                 ["compare", str(a), str(b), "-m", "eval_epoch.accuracy_top1:gt", "-m", "logs", "eval_epoch.loss", "lt"]):
        code, out2, err = run_cli(capsys, *argv)
        assert code == 0 and ranked(out2) == ranked(out), (argv, err)
    code, out, err = run_cli(capsys, "compare", "-d", f"first:{a}", f"second:{b}", "-m", "eval_epoch.loss", "min")
    assert code == 0 and ranked(out) == [("second", "2", "0.4"), ("first", "1", "0.5")], err
    # -n: the first epochs only; -b: every metric at the epoch where another is best (the seed's -b)
    code, out, err = run_cli(capsys, "compare", "-d", str(a), str(b), "-n", "2", "-m", "logs", "eval_epoch.loss", "min")
    assert code == 0 and ranked(out) == [(str(a), "1", "0.5"), (str(b), "1", "0.6")], err
    code, out, err = run_cli(capsys, "compare", "-d", str(a), str(b), "-b", "logs", "eval_epoch.accuracy_top1", "max",
                             "-m", "logs", "eval_epoch.loss", "min")
    assert code == 0, err
    assert "## eval_epoch.loss:min at the best epoch of eval_epoch.accuracy_top1:max" in out
    assert ranked(out) == [(str(b), "2", "0.4"), (str(a), "2", "0.7")]


@pytest.mark.parametrize("argv, expected", [
    (["compare"], "compare: no experiment dir given; pass EXP_DIR ... (or the seed's -d DIR ...)"),
    (["compare", "X", "-m", "logs", "eval_epoch.loss", "mini"],
     "compare: unexpected arguments eval_epoch.loss mini"),
    (["compare", "X", "-n", "zero"], "--nb_epochs: expected a positive number of epochs (or -1: all), got 'zero'"),
    (["compare", "X", "-b", "loss"], "--best: expected KEY:min or KEY:max (e.g. eval_epoch.acctop1:max), got 'loss'"),
])
def test_compare_bad_arguments_are_one_line(capsys, tmp_path, argv, expected):
    exp_dir(tmp_path / "x", loss=[1.0], acc=[1.0])
    argv = [str(tmp_path / "x") if a == "X" else a for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and err == f"error: {expected}\n" and out == ""


# ----------------------------------------------------------------------------- new
def test_new_refuses_bad_names_and_existing_folders(capsys, tmp_path):
    code, _, err = run_cli(capsys, "new", "my-project", "--dir", str(tmp_path))
    assert code == 2 and err == "error: new: the project name must be a Python identifier like MyProject, got 'my-project'\n"
    assert run_cli(capsys, "new", "Demo", "--dir", str(tmp_path))[0] == 0
    code, _, err = run_cli(capsys, "new", "Demo", "--dir", str(tmp_path))
    assert code == 2 and err == (f"error: new: {tmp_path / 'demo.bootstrap.pytorch'} already exists; choose another "
                                 f"NAME or --dir (nothing is overwritten)\n")
    code, _, err = run_cli(capsys, "new", "Other", "--dir", str(tmp_path / "missing"))
    assert code == 2 and err == f"error: new: {tmp_path / 'missing'} is not a dir; create it first or pass another --dir\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.bootstrap.pytorch"]


@pytest.mark.slow
def test_new_project_trains_resumes_and_evaluates(tmp_path):
    r = cli("new", "MyProject", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    root = tmp_path / "myproject.bootstrap.pytorch"
    assert r.stdout.splitlines() == [f"created {root}", f"train it: cd {root} && bootstrap-repro run -o "
                                                        f"myproject/options/myproject.yaml"]
    sources = [p.read_text() for p in root.rglob("*.py")]
    assert not [s for s in sources if "from bootstrap." in s]  # bootstrap-repro's API, no compatibility layer
    assert sum("from bootstrap_repro." in s for s in sources) == 5
    opts = "myproject/options/myproject.yaml"
    r = cli("run", "-o", opts, "--engine.nb_epochs", "2", "--engine.progress_bar", "false", cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    exp = root / "logs" / "myproject" / "1_exp"
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "3", cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    logs = json.loads((exp / "logs.json").read_text())
    assert logs["train_epoch.epoch"] == [0, 1, 2] and len(logs["eval_epoch.accuracy"]) == 3
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_loss", "--dataset.train_split", "",
            cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert [p for p in exp.glob("logs_eval*.json") if json.loads(p.read_text()).get("eval_epoch.loss")]
