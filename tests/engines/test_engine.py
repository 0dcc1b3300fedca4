"""Engine: golden hook order (fresh and resumed), state seen by hooks, checkpoints, NaN, stop."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bootstrap_repro.engines import HOOKS, Engine, parse_saving_criteria
from bootstrap_repro.errors import HookError, OptionsError
from bootstrap_repro.logger import Logger
from bootstrap_repro.run import run

# 48 train items / batch 16 = 3 batches; 48 eval items = 3 batches.
TRAIN_BATCH = ["train_on_start_batch", "train_on_forward", "train_on_backward", "train_on_update", "train_on_end_batch"]
EVAL_BATCH = ["eval_on_start_batch", "eval_on_forward", "eval_on_end_batch"]


def epoch_calls(nb_best: int, nb_batches: int = 3) -> list[str]:
    return (
        ["train_on_start_epoch", *TRAIN_BATCH * nb_batches, "train_on_end_epoch", "train_on_flush",
         "eval_on_start_epoch", *EVAL_BATCH * nb_batches, "eval_on_end_epoch", "eval_on_flush"]
        + ["engine_on_checkpoint"] * (nb_best + 1)
        + ["engine_on_end_epoch"]
    )


def recorder(calls):
    def setup(engine):
        for name in HOOKS:
            engine.register_hook(name, lambda e, n=name: calls.append(n))

    return setup


def test_golden_hook_order_fresh_then_resumed(tiny_options):
    calls: list[str] = []
    res = run(tiny_options({"engine": {"saving_criteria": ["loss:min"]}}), setup=recorder(calls), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    # epoch 0: best loss is new; epoch 1: the loss improves on this easy data (asserted below via best).
    assert calls[0] == "train_on_start" and calls[-1] == "train_on_end"
    body = calls[1:-1]
    first = epoch_calls(nb_best=1)
    assert body[: len(first)] == first
    second = body[len(first):]
    assert second in (epoch_calls(nb_best=1), epoch_calls(nb_best=0))
    assert len(res.engine.state.best) == 1

    calls2: list[str] = []
    exp = res.exp_dir
    opt = tiny_options({"engine": {"saving_criteria": ["loss:min"]}},
                       ["--exp.resume", "last", "--exp.dir", str(exp), "--engine.nb_epochs", "3"])
    res2 = run(opt, setup=recorder(calls2), handle_signals=False)
    assert res2.status == "COMPLETED", res2.error
    assert calls2[:2] == ["engine_on_resume", "train_on_start"]
    assert calls2[-1] == "train_on_end"
    assert calls2[2:-1] in (epoch_calls(nb_best=1), epoch_calls(nb_best=0))
    logs = json.loads((exp / "logs.json").read_text())
    assert logs["train_epoch.epoch"] == [0, 1, 2] and logs["eval_epoch.epoch"] == [0, 1, 2]


def test_print_hooks_follow_print_freq(tiny_options):
    calls: list[str] = []
    run(tiny_options({"engine": {"print_freq": 2, "nb_epochs": 1}}), setup=recorder(calls), handle_signals=False)
    # batches 0 and 2 of each of the 3-batch epochs print
    assert calls.count("train_on_print") == 2 and calls.count("eval_on_print") == 2
    i = calls.index("train_on_print")
    assert calls[i - 1] == "train_on_update" and calls[i + 1] == "train_on_end_batch"


def test_hooks_see_state_and_eval_metrics(tiny_options):
    seen = []

    def setup(engine):
        engine.register_hook("eval_on_end_epoch", lambda e: seen.append((e.epoch, dict(e.state.eval_metrics))))
        engine.register_hook("train_on_forward", lambda e: seen.append(("loss", e.state.out["loss"].requires_grad)))

    res = run(tiny_options(), setup=setup, handle_signals=False)
    epochs = [s for s in seen if s[0] != "loss"]
    assert [e for e, _ in epochs] == [0, 1]
    assert set(epochs[0][1]) == {"loss", "acctop1", "acctop2"}
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["eval_epoch.acctop1"] == [m["acctop1"] for _, m in epochs]
    assert all(flag for tag, flag in seen if tag == "loss")


def test_epoch_means_weighted_by_batch_size(tiny_options):
    # 40 items / batch 16 → batches of 16, 16 and 8: the mean weights the last one by 8.
    res = run(tiny_options({"dataset": {"nb_items": 40}, "engine": {"nb_epochs": 1}}), handle_signals=False)
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    batch = logs["eval_batch.loss"]
    assert len(batch) == 3
    weighted = (batch[0] * 16 + batch[1] * 16 + batch[2] * 8) / 40
    assert logs["eval_epoch.loss"][0] == pytest.approx(weighted, rel=1e-6)
    assert logs["eval_epoch.loss"][0] != pytest.approx(sum(batch) / 3, rel=1e-6)


def test_checkpoint_files_and_best_selection(tiny_options):
    res = run(tiny_options({"engine": {"nb_epochs": 3}}), handle_signals=False)
    names = sorted(p.name for p in res.exp_dir.glob("ckpt_*"))
    assert names == sorted(f"ckpt_{n}_{p}.pth.tar" for n in ("last", "best_loss", "best_acctop1")
                           for p in ("engine", "model", "optimizer"))
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    best_epoch = min(range(3), key=lambda i: logs["eval_epoch.loss"][i])
    state = torch.load(res.exp_dir / "ckpt_best_loss_engine.pth.tar", weights_only=True)
    assert state["epoch"] == best_epoch + 1  # the epoch to start from
    assert state["best"]["loss"] == logs["eval_epoch.loss"][best_epoch]


def test_nan_loss_skips_step_and_is_logged(tiny_options):
    def setup(engine):
        def poison(e):
            if e.state.batch == 1 and e.epoch == 0:
                e.state.out["loss"] = e.state.out["loss"] * math.nan
        engine.register_hook("train_on_forward", poison)

    before = {}

    def snapshot(engine):
        setup(engine)
        engine.register_hook("train_on_start_batch", lambda e: before.update(
            {e.state.batch: [p.detach().clone() for p in e.model.parameters()]}) if e.epoch == 0 else None)
        engine.register_hook("train_on_end_batch", lambda e: before.update(
            {("after", e.state.batch): [p.detach().clone() for p in e.model.parameters()]}) if e.epoch == 0 else None)

    res = run(tiny_options({"engine": {"nb_epochs": 1}}), setup=snapshot, handle_signals=False)
    assert res.status == "COMPLETED"
    assert all(torch.equal(a, b) for a, b in zip(before[1], before[("after", 1)]))  # skipped
    assert not all(torch.equal(a, b) for a, b in zip(before[2], before[("after", 2)]))  # stepped
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["train_epoch.nb_nan_skipped"] == [1]
    assert logs["train_batch.loss"][1] is None
    assert "non-finite loss (nan) at epoch 0 batch 1: optimizer step skipped" in (res.exp_dir / "logs.txt").read_text()


def test_request_stop_ends_after_epoch_with_checkpoint(tiny_options):
    res = run(tiny_options({"engine": {"nb_epochs": 5}}),
              setup=lambda e: e.register_hook("eval_on_end_epoch", lambda e: e.request_stop("pruned") if e.epoch == 1 else None),
              handle_signals=False)
    assert res.status == "STOPPED"
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["eval_epoch.epoch"] == [0, 1]
    assert torch.load(res.exp_dir / "ckpt_last_engine.pth.tar", weights_only=True)["epoch"] == 2


def test_unknown_hook_is_an_error(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    with pytest.raises(HookError) as exc:
        engine.register_hook("train_on_updat", lambda: None)
    assert str(exc.value) == ("unknown hook 'train_on_updat'; did you mean train_on_update? "
                              "(valid: bootstrap_repro.engines.HOOKS, e.g. train_on_end_epoch, eval_on_end_epoch)")


def test_seed_style_hook_without_argument(tiny_options):
    count = []
    run(tiny_options({"engine": {"nb_epochs": 1}}),
        setup=lambda e: e.register_hook("train_on_update", lambda: count.append(1)), handle_signals=False)
    assert len(count) == 3


@pytest.mark.parametrize("bad", ["loss", "loss:best", ":max"])
def test_saving_criteria_syntax(bad):
    with pytest.raises(OptionsError, match=r"^engine.saving_criteria: expected 'name:min' or 'name:max'"):
        parse_saving_criteria([bad])


def test_hook_plugins_from_option_and_environment(tiny_options, tmp_path, monkeypatch):
    (tmp_path / "hook_plugin_a.py").write_text(
        "def register(engine):\n    engine.register_hook('train_on_end', lambda e: e.logger('plugin A saw the end'))\n")
    (tmp_path / "hook_plugin_b.py").write_text(
        "def register(engine):\n    engine.register_hook('engine_on_end_epoch', lambda e: e.logger(f'plugin B epoch {e.epoch}'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "hook_plugin_b")
    res = run(tiny_options({"engine": {"hooks": ["hook_plugin_a"]}}), handle_signals=False)
    text = (res.exp_dir / "logs.txt").read_text()
    assert "plugin A saw the end" in text and "plugin B epoch 2" in text


class _RunningCount(torch.nn.Module):
    """A model whose output ``seen`` is a buffer it updates in place each batch (a running count)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, batch):
        self.seen.add_(len(batch["data"]))
        scores = torch.log_softmax(self.lin(batch["data"]), 1)
        return {"loss": torch.nn.functional.nll_loss(scores, batch["class_id"]), "seen": self.seen}


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device-path"])
def test_a_value_updated_in_place_is_logged_as_it_was_at_its_batch(on_device):
    """On CPU the values are read at once; on the device path they are copies, not the live tensor."""
    from bootstrap_repro.datasets import Synthetic
    from bootstrap_repro.options import DEFAULTS, Options, merge

    logger = Logger(activate=False, echo=False)
    engine = Engine(Options(merge(DEFAULTS, {"engine": {"print_freq": 0}})), logger=logger)
    engine._nan_on_device = on_device
    model = _RunningCount()
    ds = Synthetic("train", nb_items=48, nb_classes=3, dim=4, batch_size=16, shuffle=False)
    means = engine._loop("train", True, model, ds, torch.optim.SGD(model.parameters(), lr=0.1), 0, flush=False)
    logger.materialize()
    assert logger.values["train_batch.seen"] == [16.0, 32.0, 48.0]
    assert means["seen"] == 32.0
