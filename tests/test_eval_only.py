"""Eval-only runs name their files as bootstrap.pytorch did: one evaluation per split, none overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import TINY, write_options

from bootstrap_repro import views
from bootstrap_repro.cli import main
from bootstrap_repro.options import merge
from bootstrap_repro.record import compare_outputs


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files(exp: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}


@pytest.fixture
def trained(capsys, tmp_path) -> Path:
    """TINY trained for one epoch on the digits set (it has a test split; the synthetic one has train and val)."""
    pytest.importorskip("sklearn")
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")}, "engine": {"nb_epochs": 1},
                        "model": {"network": {"input_dim": 64, "nb_classes": 10}}})
    tree["dataset"] = {"name": "digits", "train_split": "train", "eval_split": "val", "batch_size": 256,
                       "nb_threads": 0}
    code, _, err = run_cli(capsys, "run", "-o", str(write_options(tmp_path / "options.yaml", tree)))
    assert code == 0, err
    return tmp_path / "exp"


def evaluate(capsys, exp: Path, split: str, ckpt: str = "best_acctop1") -> None:
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", ckpt,
                           "--dataset.train_split", "", "--dataset.eval_split", split)
    assert code == 0, err


def test_eval_on_val_then_test_keeps_both(capsys, trained):
    before = files(trained)
    evaluate(capsys, trained, "val")
    evaluate(capsys, trained, "test")
    after = files(trained)
    new = sorted(set(after) - set(before))
    assert new == ["logs_eval_test.json", "logs_eval_test.txt", "logs_eval_val.json", "logs_eval_val.txt",
                   "options_eval_test.yaml", "options_eval_val.yaml"]
    for name in ("options.yaml", "logs.json", "logs.txt"):  # the training's files are left alone
        assert after[name] == before[name], name
    for split in ("val", "test"):
        logs = json.loads(after[f"logs_eval_{split}.json"])
        assert len(logs["eval_epoch.acctop1"]) == 1 and logs["eval_epoch.epoch"] == [0]
        saved = yaml.safe_load(after[f"options_eval_{split}.yaml"])
        assert saved["dataset"]["eval_split"] == split and saved["dataset"]["train_split"] in ("", None)
        assert saved["exp"]["resume"] == "best_acctop1"
        assert "Resumed from checkpoint 'best_acctop1'" in after[f"logs_eval_{split}.txt"].decode()


def test_evaluating_a_split_again_rewrites_its_files_only(capsys, trained):
    evaluate(capsys, trained, "val")
    evaluate(capsys, trained, "test")
    test_logs = (trained / "logs_eval_test.json").read_bytes()
    evaluate(capsys, trained, "val", ckpt="last")
    assert len(json.loads((trained / "logs_eval_val.json").read_text())["eval_epoch.loss"]) == 1
    assert yaml.safe_load((trained / "options_eval_val.yaml").read_text())["exp"]["resume"] == "last"
    assert (trained / "logs_eval_test.json").read_bytes() == test_logs


def test_a_previous_versions_logs_eval_json_is_kept_and_still_drawn(capsys, trained):
    old = {"eval_epoch.epoch": [0], "eval_epoch.acctop1": [12.5]}
    (trained / "logs_eval.json").write_text(json.dumps(old))  # what the previous version wrote
    evaluate(capsys, trained, "val")
    assert json.loads((trained / "logs_eval.json").read_text()) == old
    [sub] = views.View(trained, ["logs_eval:eval_epoch.acctop1+logs_eval_val:eval_epoch.accuracy_top1"]).subplots()
    assert [t["name"] for t in sub["traces"]] == ["logs_eval:eval_epoch.acctop1",
                                                   "logs_eval_val:eval_epoch.accuracy_top1"]


def test_a_split_that_cannot_name_a_file_is_one_error(capsys, trained):
    before = files(trained)
    code, _, err = run_cli(capsys, "run", "-o", str(trained / "options.yaml"), "--exp.resume", "last",
                           "--dataset.train_split", "", "--dataset.eval_split", "../x")
    assert code == 2 and err.splitlines() == [
        ("error: dataset.eval_split: '../x' cannot name the files of an evaluation (logs_eval_<split>.json); "
         "use letters, digits, '_', '-' or '.' (e.g. val, test)")]
    assert files(trained) == before


def test_an_eval_only_run_without_checkpoint_is_the_experiment_itself(capsys, tiny_file, tmp_path):
    # as in bootstrap.pytorch: a new dir evaluated from scratch holds logs.json and options.yaml
    code, _, err = run_cli(capsys, "run", "-o", str(tiny_file()), "--dataset.train_split", "")
    assert code == 0, err
    exp = tmp_path / "exp"
    assert {"logs.json", "logs.txt", "options.yaml"} <= set(files(exp))
    assert not list(exp.glob("*eval*"))
    assert len(json.loads((exp / "logs.json").read_text())["eval_epoch.loss"]) == 1
    code, out, err = run_cli(capsys, "compare", str(exp))
    assert code == 0 and "## eval_epoch.acctop1:max" in out


def test_verify_compares_evaluations_only_when_the_rerun_made_them(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "logs.json").write_text(json.dumps({"train_epoch.loss": [1.0, 0.5]}))
    (a / "logs_eval_val.json").write_text(json.dumps({"eval_epoch.loss": [0.4]}))  # evaluated after training
    (a / "logs_eval.json").write_text(json.dumps({"eval_epoch.loss": [0.4]}))  # by the previous version
    cmp = compare_outputs(a, b)
    assert cmp.divergence is None and (cmp.values, cmp.log_files) == (2, 1)
    (b / "logs_eval_val.json").write_text(json.dumps({"eval_epoch.loss": [0.3]}))
    assert compare_outputs(a, b).divergence.startswith("logs_eval_val.json: ")
