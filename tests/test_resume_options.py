"""Resuming with other options: refused unless each changed value is an explicit --key value override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bootstrap_repro.options import check_resume_options
from bootstrap_repro.cli import main
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.options import Options


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def state(exp: Path) -> dict[str, bytes]:
    """Every file of the experiment dir (checkpoints included) and its bytes."""
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(capsys, tiny_file, tmp_path) -> Path:
    """A tiny experiment trained for 2 epochs with optimizer.lr 0.1; returns its exp dir."""
    code, _, err = run_cli(capsys, "run", "-o", str(tiny_file()))
    assert code == 0, err
    return tmp_path / "exp"


def saved_options(exp: Path) -> dict:
    return yaml.safe_load((exp / "options.yaml").read_text())


def test_options_remember_their_explicit_overrides(tiny_file):
    opt = Options.load(tiny_file(), ["--optimizer.lr", "0.5", "--engine.nb_epochs", "3"])
    assert opt.overrides == {"optimizer.lr": 0.5, "engine.nb_epochs": 3}
    opt.apply_overrides(["--engine.nb_epochs", "4", "--dataset.train_split", ""])
    copied = opt.copy()
    assert copied.overrides == {"optimizer.lr": 0.5, "engine.nb_epochs": 4, "dataset.train_split": ""}
    copied.apply_overrides(["--misc.seed", "1"])
    assert "misc.seed" not in opt.overrides, "a copy has its own overrides"
    assert Options({"a": 1}).overrides == {}


def test_resume_with_another_options_file_is_refused(capsys, trained, tiny_file, tmp_path):
    other = tiny_file({"optimizer": {"lr": 0.05}}, name="other.yaml")
    before = state(trained)
    code, out, err = run_cli(capsys, "run", "-o", str(other), "--exp.resume", "last")
    assert code == 2, (out, err)
    assert err.splitlines() == [
        f"error: exp.resume: {other} differs from {trained}/options.yaml (the experiment's options) in "
        f"optimizer.lr (0.05 here, 0.1 saved); resume with -o {trained}/options.yaml, "
        f"or pass each new value explicitly (--optimizer.lr 0.05)"
    ]
    assert "Traceback" not in err
    assert state(trained) == before, "a refused resume writes nothing"


def test_refusal_lists_every_differing_key(capsys, trained, tiny_file, tmp_path):
    other = tiny_file({"optimizer": {"lr": 0.05}, "dataset": {"name": "synthetic", "batch_size": 8},
                       "model": {"metric": {"topk": [1, 3]}}}, name="other.yaml")
    before = state(trained)
    # an explicit override of one key does not excuse the others
    code, _, err = run_cli(capsys, "run", "-o", str(other), "--exp.resume", "last", "--engine.nb_epochs", "3")
    assert code == 2
    assert err.splitlines() == [
        f"error: exp.resume: {other} differs from {trained}/options.yaml (the experiment's options) in "
        f"dataset.batch_size (8 here, 16 saved); model.metric.topk ([1, 3] here, [1, 2] saved); "
        f"optimizer.lr (0.05 here, 0.1 saved); resume with -o {trained}/options.yaml, "
        f"or pass each new value explicitly (--dataset.batch_size 8 --model.metric.topk 1 3 --optimizer.lr 0.05)"
    ]
    assert state(trained) == before


def test_explicit_override_resumes_and_is_saved(capsys, trained, tiny_file):
    other = tiny_file({"optimizer": {"lr": 0.05}}, name="other.yaml")
    code, _, err = run_cli(capsys, "run", "-o", str(other), "--exp.resume", "last",
                           "--optimizer.lr", "0.05", "--engine.nb_epochs", "3")
    assert code == 0, err
    saved = saved_options(trained)
    assert saved["optimizer"]["lr"] == 0.05 and saved["engine"]["nb_epochs"] == 3
    assert saved["exp"]["resume"] is None
    assert json.loads((trained / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]


def test_documented_resume_with_the_experiments_own_options(capsys, trained):
    code, _, err = run_cli(capsys, "run", "-o", str(trained / "options.yaml"), "--exp.resume", "last",
                           "--engine.nb_epochs", "3")
    assert code == 0, err
    assert saved_options(trained)["engine"]["nb_epochs"] == 3
    assert json.loads((trained / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]


def test_eval_only_resume_with_the_experiments_own_options(capsys, trained):
    options_before = (trained / "options.yaml").read_bytes()
    code, _, err = run_cli(capsys, "run", "-o", str(trained / "options.yaml"), "--exp.resume", "best_acctop1",
                           "--dataset.train_split", "")
    assert code == 0, err
    assert (trained / "logs_eval_val.json").is_file() and (trained / "options_eval_val.yaml").is_file()
    assert (trained / "options.yaml").read_bytes() == options_before


def test_check_returns_the_explicit_overrides_that_change_saved_values(trained):
    opt = Options.load(trained / "options.yaml", ["--exp.resume", "last", "--engine.nb_epochs", "3",
                                                  "--misc.seed", "7", "--dataset.train_split", ""])
    # misc.seed 7 is the saved value: not a change; exp.resume never counts
    assert check_resume_options(opt, trained) == {"engine.nb_epochs": 3, "dataset.train_split": ""}


def test_a_key_missing_from_an_old_saved_file_counts_as_its_default(trained, tiny_file):
    tree = saved_options(trained)
    del tree["engine"]["channels_last"]  # saved before this default existed
    del tree["runtime"]
    (trained / "options.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    opt = Options.load(tiny_file(), ["--exp.resume", "last"])
    assert check_resume_options(opt, trained) == {}
    # a value other than the default is a difference
    opt = Options.load(tiny_file({"engine": {"channels_last": True}}, name="other.yaml"), ["--exp.resume", "last"])
    with pytest.raises(OptionsError, match=r"in engine.channels_last \(true here, absent saved\); "):
        check_resume_options(opt, trained)


def test_a_key_only_in_the_saved_file_is_a_difference(trained, tiny_file):
    tree = saved_options(trained)
    tree["model"]["network"]["dropout"] = 0.2
    (trained / "options.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    opt = Options.load(tiny_file(), ["--exp.resume", "last"])
    with pytest.raises(OptionsError) as info:
        check_resume_options(opt, trained)
    # it cannot be given as a flag here, so the only fix offered is the experiment's own file
    assert str(info.value).endswith(
        f"in model.network.dropout (absent here, 0.2 saved); resume with -o {trained}/options.yaml")


def test_a_missing_saved_file_is_not_reported_here(trained, tiny_file):
    (trained / "options.yaml").unlink()
    opt = Options.load(tiny_file({"optimizer": {"lr": 0.05}}, name="other.yaml"), ["--exp.resume", "last"])
    assert check_resume_options(opt, trained) == {}
