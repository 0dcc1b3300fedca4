"""Released metric names (``accuracy_top1``) and ours (``acctop1``) work alike: saving criteria, views, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bootstrap_repro import views
from bootstrap_repro._metric_names import aliases, resolve, resolve_checkpoint
from bootstrap_repro.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- the table
def test_aliases_and_resolve():
    assert aliases("accuracy_top1") == ["acctop1"] and aliases("acctop5") == ["accuracy_top5"]
    assert aliases("eval_epoch.accuracy_top10") == ["eval_epoch.acctop10"]
    assert aliases("loss") == [] and aliases("my_acctop1") == [] and aliases("acctop") == []
    assert resolve("eval_epoch.accuracy_top1", {"eval_epoch.acctop1": [1.0]}) == "eval_epoch.acctop1"
    assert resolve("acctop1", ["accuracy_top1", "acctop1"]) == "acctop1"  # the exact name wins
    assert resolve("acctop1", ["loss"]) is None
    assert resolve_checkpoint("best_accuracy_top1", ["last", "best_acctop1"]) == "best_acctop1"
    assert resolve_checkpoint("best_acctop1", ["best_accuracy_top1"]) == "best_accuracy_top1"
    assert resolve_checkpoint("best_acctop1", ["best_acctop1", "best_accuracy_top1"]) == "best_acctop1"
    assert resolve_checkpoint("best_loss", ["last"]) == "best_loss" and resolve_checkpoint("last", []) == "last"


# ----------------------------------------------------------------------------- saving criteria
def test_released_saving_criteria_train_keep_best_and_resume(capsys, tiny_file, tmp_path):
    f = tiny_file({"engine": {"saving_criteria": ["accuracy_top1:max", "eval_epoch.accuracy_top2:max", "loss:min"]}})
    code, _, err = run_cli(capsys, "run", "-o", str(f))
    assert code == 0, err
    exp = tmp_path / "exp"
    names = {p.name for p in exp.glob("ckpt_best_*_model.pth.tar")}
    # a checkpoint is named as the criterion is written, so `--exp.resume best_accuracy_top1` finds it
    assert names == {"ckpt_best_accuracy_top1_model.pth.tar", "ckpt_best_eval_epoch.accuracy_top2_model.pth.tar",
                     "ckpt_best_loss_model.pth.tar"}
    code, out, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_accuracy_top1",
                             "--engine.nb_epochs", "3")
    assert code == 0, err
    assert "Resumed from checkpoint 'best_accuracy_top1'" in out
    logs = json.loads((exp / "logs.json").read_text())
    assert logs["eval_epoch.epoch"][-1] == 2 and "eval_epoch.accuracy_top1" not in logs  # ours logs acctop1
    # the other spelling finds the same checkpoint
    code, out, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_acctop1",
                             "--dataset.train_split", "")
    assert code == 0, err
    assert "Resumed from checkpoint 'best_accuracy_top1'" in out


def test_a_criterion_logged_under_no_spelling_is_one_error(capsys, tiny_file, tmp_path):
    f = tiny_file({"engine": {"saving_criteria": ["accuracy_top3:max"]}})  # topk is [1, 2]
    code, _, err = run_cli(capsys, "run", "-o", str(f))
    assert code == 2 and err.splitlines() == [
        ("error: engine.saving_criteria: 'accuracy_top3' is never logged (eval_epoch has: acctop1, acctop2, loss); "
         "use one of those names")]
    assert not (tmp_path / "exp").exists()


# ----------------------------------------------------------------------------- views
def _old_dir(path: Path) -> Path:
    """An experiment dir as bootstrap.pytorch 0.0.13 left it: accuracy_top1 in logs.json."""
    path.mkdir()
    (path / "logs.json").write_text(json.dumps({
        "train_epoch.epoch": [0, 1, 2], "train_epoch.loss": [1.0, 0.6, 0.5],
        "train_epoch.accuracy_top1": [50.0, 70.0, 75.0],
        "eval_epoch.epoch": [0, 1, 2], "eval_epoch.loss": [0.9, 0.7, 0.8],
        "eval_epoch.accuracy_top1": [60.0, 80.0, 78.0], "eval_epoch.accuracy_top5": [90.0, 95.0, 96.0],
    }))
    return path


def _new_dir(path: Path) -> Path:
    """An experiment dir of bootstrap-repro: acctop1 in logs.json."""
    path.mkdir()
    (path / "logs.json").write_text(json.dumps({
        "train_epoch.epoch": [0, 1], "train_epoch.loss": [1.1, 0.4], "train_epoch.acctop1": [55.0, 85.0],
        "eval_epoch.epoch": [0, 1], "eval_epoch.loss": [0.5, 0.6],
        "eval_epoch.acctop1": [70.0, 90.0], "eval_epoch.acctop5": [99.0, 100.0],
    }))
    return path


@pytest.mark.parametrize("key", ["eval_epoch.accuracy_top1", "eval_epoch.acctop1"])
def test_view_items_of_either_spelling_draw_in_old_and_new_dirs(tmp_path, key):
    dirs = {_old_dir(tmp_path / "old"): "eval_epoch.accuracy_top1", _new_dir(tmp_path / "new"): "eval_epoch.acctop1"}
    for d, stored in dirs.items():
        expected = json.loads((d / "logs.json").read_text())
        [sub] = views.View(d, [f"logs:{key}"]).subplots()
        assert [t["y"] for t in sub["traces"]] == [expected[stored]], d
        assert sub["traces"][0]["x"] == expected["eval_epoch.epoch"] and sub["title"] == key
        assert views.unlogged(views.parse_items([f"logs:{key}"]), {"logs": expected}) == []


def test_view_command_draws_both_spellings_and_warns_once_for_a_key_never_logged(capsys, tmp_path):
    items = ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:eval_epoch.accuracy_top1",
             "logs:eval_epoch.acctop5", "logs:eval_epoch.recall", "logs:eval_epoch.precision"]
    for d in (_old_dir(tmp_path / "old"), _new_dir(tmp_path / "new")):
        (d / "options.yaml").write_text(yaml.safe_dump({"exp": {"dir": str(d)}, "view": items}))
        code, out, err = run_cli(capsys, "view", str(d))
        assert code == 0 and out.strip() == str(d / "view.html")
        assert err.splitlines() == [
            ("warning: view: 2 items never logged, no curve drawn: logs:eval_epoch.recall (logs.json has no such key), "
             "logs:eval_epoch.precision (logs.json has no such key); fix the view option")], d
        subs = views.View(d, items).subplots()
        assert [len(s["traces"]) for s in subs] == [2, 1, 1, 0, 0]


def test_a_run_warns_once_at_its_end_for_a_view_item_never_logged(capsys, tiny_file):
    f = tiny_file({"view": ["logs:eval_epoch.accuracy_top1", "logs:train_epoch.acctop2", "logs:eval_epoch.los"]})
    code, _, err = run_cli(capsys, "run", "-o", str(f))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [("warning: view: 1 item never logged, no curve drawn: logs:eval_epoch.los (logs.json has no "
                         "such key; did you mean eval_epoch.loss?); fix the view option")]


# ----------------------------------------------------------------------------- compare
@pytest.mark.parametrize("metric", ["eval_epoch.accuracy_top1:max", "eval_epoch.acctop1:max"])
def test_compare_ranks_old_and_new_dirs_together(capsys, tmp_path, metric):
    old, new = _old_dir(tmp_path / "old"), _new_dir(tmp_path / "new")
    code, out, err = run_cli(capsys, "compare", str(old), str(new), "-m", metric)
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0] == f"## {metric}"
    rows = [line.split() for line in lines[2:]]
    assert rows == [["1", str(new), "1", "90"], ["2", str(old), "1", "80"]]


def test_compare_default_metrics_rank_old_and_new_dirs(capsys, tmp_path):
    old, new = _old_dir(tmp_path / "old"), _new_dir(tmp_path / "new")
    code, out, err = run_cli(capsys, "compare", str(old), str(new))
    assert code == 0 and err == ""
    assert "not logged by" not in out
    loss = out[out.index("## eval_epoch.loss:min"):].splitlines()
    assert [r.split()[:2] for r in loss[2:4]] == [["1", str(new)], ["2", str(old)]]


def test_a_sweep_objective_of_either_spelling_reads_the_logs(tmp_path):
    from bootstrap_repro.sweep import objective_series

    old = json.loads((_old_dir(tmp_path / "old") / "logs.json").read_text())
    new = json.loads((_new_dir(tmp_path / "new") / "logs.json").read_text())
    assert objective_series(old, "eval_epoch.acctop1") == [(0, 60.0), (1, 80.0), (2, 78.0)]
    assert objective_series(new, "eval_epoch.accuracy_top1") == [(0, 70.0), (1, 90.0)]
