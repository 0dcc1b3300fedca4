"""The seed's Engine API: ``Engine()``, ``hooks``, ``epoch``, ``best_out``, ``is_best``, state,
``save``/``resume``/``load``, ``generate_view``, ``hook()`` overrides, other modes' hooks, ``engine.debug``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bootstrap_repro import datasets, models, optimizers
from bootstrap_repro._current import NoCurrentError
from bootstrap_repro.engines import HOOKS, Engine
from bootstrap_repro.errors import HookError, OptionsError
from bootstrap_repro.logger import Logger
from bootstrap_repro.run import run


def built(options: Any, logger: Logger | None = None, cls: type[Engine] = Engine) -> Engine:
    """An engine with the tiny dataset, model and optimizer, as the run builds them."""
    engine = cls(options, logger or Logger(activate=False, echo=False))
    engine.dataset = datasets.factory(engine)
    engine.model = models.factory(engine)
    engine.optimizer = optimizers.factory(engine.model, engine)
    return engine


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# --------------------------------------------------------------------------- construction
def test_engine_without_arguments_reads_the_current_options_and_logger(tiny_options):
    options, logger = tiny_options(), Logger(activate=False, echo=False)
    with options.activate(), logger.activate():
        engine = Engine()
    assert engine.options is options and engine.logger is logger
    assert engine.device == torch.device("cpu") and engine.nb_epochs == 2
    with pytest.raises(NoCurrentError, match=r"^Options\(\) was called but no experiment is active"):
        Engine()


def test_an_engine_plugin_built_seed_style_runs(tiny_options, plugin):
    name = plugin(
        "from bootstrap_repro.engines import Engine\n"
        "class MyEngine(Engine):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.created_with = self.options['exp.dir']\n"
        "def factory():\n"
        "    return MyEngine()\n"
    )
    res = run(tiny_options({"engine": {"import": name}}), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert type(res.engine).__name__ == "MyEngine" and res.engine.created_with == str(res.exp_dir)


# --------------------------------------------------------------------------- hooks
def test_hooks_dict_holds_callables_taking_no_argument(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    calls: list[Any] = []
    engine.register_hook("train_on_end_epoch", lambda: calls.append("seed"))
    engine.register_hook("train_on_end_epoch", lambda e: calls.append(e))
    assert list(engine.hooks) == ["train_on_end_epoch"] and len(engine.hooks["train_on_end_epoch"]) == 2
    for func in engine.hooks["train_on_end_epoch"]:  # how the seed's own hook() fires them
        func()
    assert calls == ["seed", engine]


def test_a_hook_override_sees_every_hook_the_registered_ones_do(tiny_options):
    seen: list[str] = []

    class Tracing(Engine):
        def hook(self, name: str) -> None:
            seen.append(name)
            super().hook(name)

    fired: list[str] = []

    def record(engine: Engine) -> None:
        for name in HOOKS:
            engine.register_hook(name, lambda n=name: fired.append(n))

    opts = tiny_options({"engine": {"print_freq": 1, "nb_epochs": 1}})
    reference: list[str] = []
    run(opts, setup=lambda e: [e.register_hook(n, lambda n=n: reference.append(n)) for n in HOOKS],
        handle_signals=False)
    engine = built(tiny_options({"engine": {"print_freq": 1, "nb_epochs": 1}, "exp": {"dir": None}}), cls=Tracing)
    record(engine)
    engine.train()
    per_batch = {f"{m}_on_{e}" for m in ("train", "eval") for e in ("start_batch", "forward", "print", "end_batch")}
    assert per_batch | {"train_on_backward", "train_on_update"} <= set(seen)
    assert fired == [n for n in seen if n in HOOKS]  # super().hook() still fires the registered functions
    assert [n for n in reference if not n.startswith("engine_on_")] == [n for n in seen if not n.startswith("engine_on_")]


def test_the_fast_path_is_kept_without_an_override(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    assert type(engine).hook is Engine.hook


def test_other_modes_fire_their_own_valid_hooks(tiny_options):
    engine = built(tiny_options())
    seen: list[str] = []
    for name in ("val_on_start_epoch", "val_on_forward", "val_on_end_epoch", "test_on_end_epoch"):
        engine.register_hook(name, lambda n=name: seen.append(n))
    out = engine.eval_epoch(engine.model, engine.dataset["eval"], 0, mode="val")
    assert seen == ["val_on_start_epoch"] + ["val_on_forward"] * 3 + ["val_on_end_epoch"]
    assert set(out) == {"loss", "acctop1", "acctop2"}
    assert engine.logger.values["val_epoch.loss"] == [out["loss"]] and len(engine.logger.values["val_batch.loss"]) == 3
    assert engine.state.metrics["val"] == out and engine.state.eval_metrics == {}  # eval's own stay apart
    with pytest.raises(HookError) as info:
        engine.register_hook("vall_on_end_epoch", lambda: None)
    assert str(info.value) == ("unknown hook 'vall_on_end_epoch'; did you mean val_on_end_epoch? "
                               "(valid: bootstrap_repro.engines.HOOKS, e.g. train_on_end_epoch, eval_on_end_epoch)")
    with pytest.raises(HookError, match="did you mean train_on_update"):
        engine.register_hook("train_on_updat", lambda: None)


def test_a_dataset_key_names_a_mode_whose_hooks_are_valid(tiny_options):
    engine = built(tiny_options())
    with pytest.raises(HookError):
        engine.register_hook("trainval_on_end_epoch", lambda: None)
    engine.dataset["trainval"] = engine.dataset["train"]
    engine.register_hook("trainval_on_end_epoch", lambda: None)
    before = params(engine.model)
    out = engine.train_epoch(engine.model, engine.dataset["trainval"], engine.optimizer, 0, mode="trainval")
    assert "loss" in out and engine.logger.values["trainval_epoch.loss"] == [out["loss"]]
    assert not all(torch.equal(a, b) for a, b in zip(before, params(engine.model)))  # it trained


def test_a_mode_with_its_own_metric_uses_it(tiny_options):
    engine = built(tiny_options())
    counted: list[int] = []
    model = engine.model
    model.metrics = {**model.metrics, "test": lambda cri, net, batch: counted.append(len(net)) or {"seen": len(net)}}
    out = engine.eval_epoch(model, engine.dataset["eval"], 0, mode="test")
    assert counted == [16, 16, 16] and out["seen"] == 16 and "loss" in out  # no 'test' criterion: eval's
    engine.eval_epoch(model, engine.dataset["eval"], 0)
    assert len(counted) == 3  # mode 'eval' uses the eval metric again


# --------------------------------------------------------------------------- state, best values
def test_epoch_is_settable_and_state_dict_round_trips(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    engine.epoch = 3
    engine.best_out = {"loss": 0.25}
    assert engine.state.epoch == 3 and engine.state.best == {"loss": 0.25}
    state = engine.state_dict()
    assert state["epoch"] == 3 and state["best_out"] == {"loss": 0.25}
    other = Engine(tiny_options(), Logger(activate=False, echo=False))
    other.load_state_dict({"epoch": 5, "best_out": {"acctop1": 90.0}})  # a seed checkpoint's keys only
    assert (other.epoch, other.best_out) == (5, {"acctop1": 90.0})


def test_is_best_keeps_the_best_value_per_criterion(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    assert engine.is_best({"loss": 0.5}, "loss:min")  # the first value is a best (the seed's said False)
    assert engine.is_best({"loss": 0.4}, "loss:min") and not engine.is_best({"loss": 0.6}, "loss:min")
    assert engine.is_best({"acctop1": 50.0}, "acctop1:max") and not engine.is_best({"acctop1": 40.0}, "acctop1:max")
    assert engine.best_out == {"loss": 0.4, "acctop1": 50.0}
    with pytest.raises(OptionsError, match=r"^engine.saving_criteria: expected 'name:min' or 'name:max'"):
        engine.is_best({"loss": 0.1}, "loss")
    with pytest.raises(ValueError, match=r"'recall' is never logged"):
        engine.is_best({"loss": 0.1}, "recall:max")
    engine.logger.log_value("eval_epoch.recall_at_1", 0.7)  # the seed's logger engine read the logger
    assert engine.is_best({}, "eval_epoch.recall_at_1:max") and engine.best_out["eval_epoch.recall_at_1"] == 0.7


def test_a_subclass_is_best_decides_the_best_checkpoints(tiny_options, plugin):
    name = plugin(
        "from bootstrap_repro.engines import Engine\n"
        "class Never(Engine):\n"
        "    def is_best(self, out, saving_criteria):\n"
        "        return False\n"
        "def factory():\n"
        "    return Never()\n"
    )
    res = run(tiny_options({"engine": {"import": name}}), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert sorted(p.name for p in res.exp_dir.glob("ckpt_*")) == [f"ckpt_last_{p}.pth.tar"
                                                                 for p in ("engine", "model", "optimizer")]


def test_a_dotted_saving_criterion_reads_the_logger(tiny_options):
    res = run(tiny_options({"engine": {"name": "logger", "saving_criteria": ["train_epoch.loss:min"]}}),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert (res.exp_dir / "ckpt_best_train_epoch.loss_model.pth.tar").exists()


# --------------------------------------------------------------------------- checkpoints
def test_save_then_resume_continues_at_the_next_epoch(tiny_options, tmp_path):
    exp = tmp_path / "seed_style"
    exp.mkdir()
    engine = built(tiny_options({"exp": {"dir": str(exp)}}))
    engine.train_epoch(engine.model, engine.dataset["train"], engine.optimizer, 0)
    engine.epoch = 0
    engine.best_out = {"loss": 1.5}
    engine.save(exp, "last", engine.model, engine.optimizer)  # the seed's train() saves, then epoch += 1
    assert sorted(p.name for p in exp.glob("ckpt_*")) == [f"ckpt_last_{p}.pth.tar" for p in ("engine", "model", "optimizer")]
    saved = params(engine.model)

    other = built(tiny_options({"exp": {"dir": str(exp), "resume": "last"}}))
    other.resume()
    assert other.epoch == 1 and other.best_out == {"loss": 1.5}
    assert all(torch.equal(a, b) for a, b in zip(saved, params(other.model)))
    assert other.optimizer.state_dict()["optimizer"]["state"]  # momentum buffers came back

    third = built(tiny_options())
    third.load(exp, "last", third.model, third.optimizer)
    assert third.epoch == 1


def test_a_seed_engine_file_resumes_after_its_epoch(tiny_options, tmp_path):
    exp = tmp_path / "exp0"
    exp.mkdir()
    engine = built(tiny_options())
    engine.save(exp, "last", engine.model, engine.optimizer)
    torch.save({"epoch": 4, "best_out": {"loss": 0.3}}, exp / "ckpt_last_engine.pth.tar")  # bootstrap.pytorch 0.0.13
    other = built(tiny_options())
    other.load(exp, "last", other.model, other.optimizer)
    assert (other.epoch, other.best_out) == (5, {"loss": 0.3})


def test_a_subclass_state_is_checkpointed_and_resumed(tiny_options, plugin):
    name = plugin(
        "from bootstrap_repro.engines import Engine\n"
        "class Counting(Engine):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.nb_saves = 0\n"
        "    def state_dict(self):\n"
        "        self.nb_saves += 1\n"
        "        return {**super().state_dict(), 'nb_saves': self.nb_saves}\n"
        "    def load_state_dict(self, state):\n"
        "        super().load_state_dict(state)\n"
        "        self.nb_saves = state['nb_saves']\n"
        "def factory():\n"
        "    return Counting()\n"
    )
    res = run(tiny_options({"engine": {"import": name, "saving_criteria": []}}), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    assert res.engine.nb_saves == 2
    again = run(tiny_options({"engine": {"import": name, "saving_criteria": []}},
                             ["--exp.resume", "last", "--exp.dir", str(res.exp_dir), "--engine.nb_epochs", "3"]),
                handle_signals=False)
    assert again.status == "COMPLETED", again.error
    assert again.engine.nb_saves == 3 and again.engine.state.resumed_from == "last"


def test_generate_view_rebuilds_the_view(tiny_options):
    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    engine.generate_view()  # no view: nothing
    calls: list[Any] = []
    engine.view = type("V", (), {"on_flush": lambda self, e: calls.append(e)})()
    engine.generate_view()
    assert calls == [engine]


# --------------------------------------------------------------------------- loop options of the seed
def test_eval_epoch_without_logs_json_does_not_flush(tiny_options, tmp_path):
    logger = Logger(tmp_path / "logs_dir", activate=False, echo=False)
    engine = built(tiny_options(), logger)
    engine.eval_epoch(engine.model, engine.dataset["eval"], 0, logs_json=False)
    assert not (tmp_path / "logs_dir" / "logs.json").exists()
    engine.eval_epoch(engine.model, engine.dataset["eval"], 0)
    assert json.loads((tmp_path / "logs_dir" / "logs.json").read_text())["eval_epoch.epoch"] == [0, 0]


def test_engine_debug_runs_a_few_batches_per_epoch(tiny_options):
    opts = tiny_options({"engine": {"debug": True, "nb_epochs": 1},
                         "dataset": {"nb_items": 80, "batch_size": 4}})
    res = run(opts, handle_signals=False)
    assert res.status == "COMPLETED", res.error
    logs = json.loads(Path(res.exp_dir, "logs.json").read_text())
    assert len(logs["train_batch.loss"]) == 4 and len(logs["eval_batch.loss"]) == 12  # the seed's i > 2, i > 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_the_seeds_misc_cuda_on_a_cpu_machine_names_its_key(tiny_options):
    from bootstrap_repro.engines import resolve_device

    with pytest.raises(OptionsError) as info:
        resolve_device(tiny_options({"misc": {"cuda": True}}))
    assert str(info.value) == (f"misc.cuda: 'cuda' asked but torch sees no GPU (torch {torch.__version__}, CUDA build "
                               f"{torch.version.cuda or 'none'}); use --misc.cuda false")
