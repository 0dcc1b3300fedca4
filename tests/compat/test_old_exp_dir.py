"""A bootstrap.pytorch 0.0.13 experiment dir resumes and evaluates; one that cannot be used is one error line.

The dir is written here from the seed's documented layout (``bootstrap/engines/engine.py`` ``save``,
``bootstrap/models/model.py`` ``state_dict``), with torch's legacy (pre-1.6) file format as the seed's
torch wrote it: model ``{'network', 'criterions', 'metrics'}``, optimizer the torch optimizer's own
state dict, engine ``{'epoch', 'best_out'}``, a compact ``logs.json`` and the seed's ``options.yaml``
(``yaml.dump``, sorted keys).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from bootstrap_repro.cli import main
from bootstrap_repro.engines._seed_ckpt import model_state_from_seed, optimizer_state_for, seed_logs_lengths
from bootstrap_repro.models import MLP
from bootstrap_repro.options import merge

from conftest import TINY

#: What the seed logged after epoch 0 (its batch keys, its metric names).
SEED_LOGS = {
    "train_batch.epoch": [0, 0, 0], "train_batch.batch": [0, 1, 2], "train_batch.loss": [1.5, 1.3, 1.1],
    "train_batch.accuracy_top1": [25.0, 37.5, 50.0],
    "train_epoch.epoch": [0], "train_epoch.loss": [1.3], "train_epoch.accuracy_top1": [37.5],
    "eval_batch.epoch": [0, 0, 0], "eval_batch.batch": [0, 1, 2], "eval_batch.loss": [1.2, 1.2, 1.2],
    "eval_epoch.epoch": [0], "eval_epoch.loss": [1.2], "eval_epoch.accuracy_top1": [50.0],
}


def _save(obj, path: Path) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)  # the seed's torch (0.4) wrote this format


def make_seed_exp_dir(exp: Path, hidden: int = 16) -> Path:
    """A 0.0.13 exp dir of TINY's model that ended epoch 0 (``ckpt_last_*`` and ``ckpt_best_loss_*``)."""
    exp.mkdir(parents=True)
    tree = merge(TINY, {"exp": {"dir": str(exp), "resume": None}})
    (exp / "options.yaml").write_text(yaml.dump(tree, default_flow_style=False))
    torch.manual_seed(0)
    net = MLP(input_dim=8, hidden=hidden, nb_classes=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.nll_loss(net(torch.randn(16, 8)), torch.randint(0, 4, (16,))).backward()
    opt.step()
    opt_state = opt.state_dict()
    for group in opt_state["param_groups"]:  # the keys torch 0.4's SGD had
        for key in list(group):
            if key not in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "params"):
                del group[key]
    for name in ("last", "best_loss"):
        _save({"network": net.state_dict(), "criterions": {}, "metrics": {}}, exp / f"ckpt_{name}_model.pth.tar")
        _save(opt_state, exp / f"ckpt_{name}_optimizer.pth.tar")
        _save({"epoch": 0, "best_out": {"loss": 1.2}}, exp / f"ckpt_{name}_engine.pth.tar")
    (exp / "logs.json").write_text(json.dumps(SEED_LOGS, separators=(",", ":")))
    (exp / "logs.txt").write_text("[I 2018-07-23 18:58:31] ...trap/engines/engine.py.80: Launching training\n")
    return exp


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_seed_exp_dir_resumes_for_one_more_epoch(capsys, tmp_path):
    exp = make_seed_exp_dir(tmp_path / "old")
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "last")
    assert code == 0, err
    logs = json.loads((exp / "logs.json").read_text())
    for key, values in SEED_LOGS.items():  # the seed's values are kept, in front
        assert logs[key][: len(values)] == values, key
    assert logs["train_epoch.epoch"] == [0, 1] and logs["eval_epoch.epoch"] == [0, 1]
    assert len(logs["eval_epoch.acctop1"]) == 1 and len(logs["train_epoch.loss"]) == 2
    engine = torch.load(exp / "ckpt_last_engine.pth.tar", weights_only=True)
    assert engine["resume_epoch"] == 2 and engine["format"]
    model = torch.load(exp / "ckpt_last_model.pth.tar", weights_only=True)
    assert "network.layers.0.weight" in model  # written back in bootstrap-repro's layout
    assert json.loads((exp / "repro" / "record.json").read_text())["status"] == "COMPLETED"


def test_seed_exp_dir_evaluates(capsys, tmp_path):
    exp = make_seed_exp_dir(tmp_path / "old")
    before = {k: v for k, v in digest(exp).items() if k.startswith("ckpt_") or k == "logs.json"}
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_loss",
                           "--dataset.train_split", "")
    assert code == 0, err
    after = digest(exp)
    assert all(after[k] == v for k, v in before.items()), "an evaluation changes no checkpoint and no logs.json"
    evals = [p for p in exp.glob("logs_eval*.json")]
    assert len(evals) == 1, sorted(p.name for p in exp.iterdir())
    values = json.loads(evals[0].read_text())
    assert len(values["eval_epoch.loss"]) == 1 and values["eval_epoch.acctop1"][0] >= 0


@pytest.mark.parametrize("eval_only", [False, True])
def test_seed_checkpoint_of_another_network_is_one_line_and_writes_nothing(capsys, tmp_path, eval_only):
    exp = make_seed_exp_dir(tmp_path / "old", hidden=32)  # the options say hidden: 16
    before = digest(tmp_path)
    argv = ["run", "-o", str(exp / "options.yaml"), "--exp.resume", "last"]
    code, _, err = run_cli(capsys, *argv, *(["--dataset.train_split", ""] if eval_only else []))
    assert code == 2
    assert err.strip() == (
        f"error: {exp / 'ckpt_last_model.pth.tar'}: does not fit the model built from the options (shape of "
        f"network.layers.0.weight [32, 8] in the file, [16, 8] in the model (and 2 more)); resume with the "
        f"options (model, optimizer) and the network code it was saved with")
    assert digest(tmp_path) == before, "no record, no lock, no log line: nothing is written into the old dir"


def test_unusable_seed_files_are_one_line_and_write_nothing(capsys, tmp_path):
    exp = make_seed_exp_dir(tmp_path / "old")
    (exp / "ckpt_best_loss_optimizer.pth.tar").write_bytes(b"not a checkpoint")
    _save({"epoch": "zero"}, exp / "ckpt_last_engine.pth.tar")
    before = digest(tmp_path)
    opts = str(exp / "options.yaml")
    code, _, err = run_cli(capsys, "run", "-o", opts, "--exp.resume", "best_loss")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {exp / 'ckpt_best_loss_optimizer.pth.tar'}: cannot be read as a checkpoint (")
    code, _, err = run_cli(capsys, "run", "-o", opts, "--exp.resume", "last")
    assert code == 2 and err.strip() == (
        f"error: {exp / 'ckpt_last_engine.pth.tar'}: not an engine checkpoint (expected a dict with an int "
        f"'epoch', got dict without one); resume another checkpoint")
    assert digest(tmp_path) == before
    (exp / "logs.json").write_text('{"train_epoch.loss": [1.3')  # cut
    _save({"epoch": 0, "best_out": {}}, exp / "ckpt_last_engine.pth.tar")
    before = digest(tmp_path)
    code, _, err = run_cli(capsys, "run", "-o", opts, "--exp.resume", "last")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {exp / 'logs.json'}: cannot be read (")
    assert digest(tmp_path) == before


def test_seed_state_mapping():
    net = MLP(input_dim=8, hidden=4, nb_classes=2)
    flat = model_state_from_seed({"network": net.state_dict(), "criterions": {"train": {"w": 1}}, "metrics": {}})
    assert list(flat) == [f"network.{k}" for k in net.state_dict()] + ["criterion_train.w"]
    plain = torch.optim.SGD(net.parameters(), lr=0.1).state_dict()
    wrapped = optimizer_state_for({"optimizer": {}, "scheduler": None}, plain)
    assert wrapped == {"optimizer": plain, "scheduler": None}
    assert optimizer_state_for(plain, wrapped) is plain
    # a seed run killed after its train epoch 1 flushed logs.json: its checkpoint is of epoch 0
    logs = {"train_epoch.epoch": [0, 1], "train_epoch.loss": [2.0, 1.0], "eval_epoch.epoch": [0],
            "eval_epoch.loss": [1.5], "misc.note": ["kept"]}
    assert seed_logs_lengths(logs, 0) == {"train_epoch.epoch": 1, "train_epoch.loss": 1, "eval_epoch.epoch": 1,
                                          "eval_epoch.loss": 1, "misc.note": 1}


def test_incomplete_seed_checkpoint_is_one_line_and_never_trained_over(capsys, tmp_path):
    """A dir whose optimizer files were deleted is not a run that stopped before its first checkpoint."""
    exp = make_seed_exp_dir(tmp_path / "old")
    (exp / "ckpt_last_optimizer.pth.tar").unlink()
    before = digest(tmp_path)
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "last")
    assert code == 2 and err.strip() == (
        f"error: exp.resume: checkpoint 'last' in {exp} is incomplete (no ckpt_last_optimizer.pth.tar); restore "
        f"the missing file, or resume another checkpoint (complete: best_loss)")
    for p in exp.glob("ckpt_best_loss_*"):
        p.unlink()
    before = digest(tmp_path)
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "last")
    assert code == 2 and "is incomplete (no ckpt_last_optimizer.pth.tar)" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_loss")
    assert code == 2 and err.strip() == (
        f"error: exp.resume: no checkpoint 'best_loss' in {exp} (complete: none; files of incomplete ones: "
        f"ckpt_last_engine.pth.tar ...); resume a complete one, restore the missing files, or train in a new "
        f"--exp.dir")
    assert digest(tmp_path) == before
