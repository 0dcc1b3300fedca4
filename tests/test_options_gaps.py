"""The gaps an adversarial review found in the options checks, each with its exact one-line error.

Typos in platform keys, duplicate YAML keys, a model that does not fit the data, unbounded counts,
odd values where a list is expected, and the Docker runtime's pull note. Exit code 2, one
``error:`` line, no traceback, nothing created (``assert_bad_input``).
"""

from __future__ import annotations

import io
import json
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from bootstrap_repro import _schema
from bootstrap_repro import options as options_module
from bootstrap_repro.engines._probe import check_fit
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.options import Options, merge

from conftest import TINY, write_options
from test_cli import assert_bad_input, run_cli

PLUGIN = "if it is a plugin's own key, rename it"


# --------------------------------------------------------------------------- 1. typos in platform keys
def near_miss_file(tiny_file, changes=None, drop=(), name="options.yaml"):
    """A tiny options file with ``changes`` merged in and the dotted keys of ``drop`` left out."""
    path = tiny_file(changes, name=name)
    tree = yaml.safe_load(path.read_text())
    for key in drop:
        *head, last = key.split(".")
        node = tree
        for part in head:
            node = node[part]
        node.pop(last)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def warned(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def passed_on(key: str, right: str, what: str = "an option") -> str:
    return f"warning: {key}: not {what} of the platform (did you mean {right}?); passed on to plugins as is"


# the platform key is not set and no plugin owns the section: the platform would silently use its default
@pytest.mark.parametrize("changes, drop, expected", [
    ({"engine": {"nb_epoch": 10}}, ["engine.nb_epochs"], "engine.nb_epoch: unknown option; did you mean engine.nb_epochs?"),
    ({"exp": {"resum": "last"}}, [], "exp.resum: unknown option; did you mean exp.resume?"),
    ({"optimizer": {"lrr": 0.1}}, ["optimizer.lr"], "optimizer.lrr: unknown option; did you mean optimizer.lr?"),
    ({"misc": {"sed": 3}}, ["misc.seed"], "misc.sed: unknown option; did you mean misc.seed?"),
    ({"dataset": {"batch_sise": 3}}, ["dataset.batch_size"],
     "dataset.batch_sise: unknown option; did you mean dataset.batch_size?"),
    ({"engine": {"nb_epoc": 3}}, ["engine.nb_epochs"],
     "engine.nb_epoc: unknown option; did you mean engine.nb_epochs?"),  # 2 edits, 9 chars
    ({"engine": {"NB_EPOCHS": 3}}, ["engine.nb_epochs"], "engine.NB_EPOCHS: unknown option; did you mean engine.nb_epochs?"),
    ({"engine": {"Saving_criteria": []}}, ["engine.saving_criteria"],
     "engine.Saving_criteria: unknown option; did you mean engine.saving_criteria?"),
    ({"dataset": {"val_split": "val"}}, ["dataset.eval_split"],
     "dataset.val_split: unknown option; did you mean dataset.eval_split?"),
    ({"engine": {"devices": "cpu"}}, [], "engine.devices: unknown option; did you mean engine.device?"),
    ({"runtime": {"slurm": {"partiton": "gpu"}}}, [],
     "runtime.slurm.partiton: unknown option; did you mean runtime.slurm.partition?"),
    ({"runtime": {"docker": {"imgae": "x"}}}, [], "runtime.docker.imgae: unknown option; did you mean runtime.docker.image?"),
    ({"model": {"netwrok": {"name": "mlp"}}}, ["model.network"],
     "model.netwrok: unknown option; did you mean model.network?"),
])
def test_a_near_miss_of_an_unset_platform_key_is_refused(capsys, tiny_file, tmp_path, changes, drop, expected):
    path = near_miss_file(tiny_file, changes, drop)
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(path)], f"{expected} (in options.yaml; {PLUGIN})")


def test_a_near_miss_of_an_absent_section_is_refused(capsys, tiny_file, tmp_path):
    path = near_miss_file(tiny_file, {"enigne": {"nb_epochs": 3}}, drop=["engine"])
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(path)],
                     "enigne: unknown section; did you mean engine? (in options.yaml; if it is a plugin's own "
                     "section, rename it)")


# keys of bootstrap.pytorch projects, which add their own keys anywhere: the platform key is set too (or a plugin
# owns the section), so the key is most likely the plugin's own. One warning, and the run goes on.
@pytest.mark.parametrize("changes, warnings", [
    ({"dataset": {"val_split": 0.1}}, [("dataset.val_split", "dataset.eval_split")]),
    ({"dataset": {"patch_size": 32}}, [("dataset.patch_size", "dataset.batch_size")]),
    ({"dataset": {"names": ["a"], "eval_splits": ["val", "test"]}},
     [("dataset.names", "dataset.name"), ("dataset.eval_splits", "dataset.eval_split")]),
    ({"model": {"criterion_d": {"name": "bce"}, "network_d": {"name": "mlp"}}},
     [("model.criterion_d", "model.criterion")]),  # network_d is 2 edits from a 7-letter key: no near miss
    ({"model": {"metrics": [], "criterions": [], "networks": []}},
     [("model.metrics", "model.metric"), ("model.criterions", "model.criterion"), ("model.networks", "model.network")]),
    ({"engine": {"device": "cpu", "devices": [0, 1], "hooks": [], "hook": "x", "compile": False, "compiled": False,
                 "saving_criterion": "loss"}},
     [("engine.devices", "engine.device"), ("engine.hook", "engine.hooks"), ("engine.compiled", "engine.compile"),
      ("engine.saving_criterion", "engine.saving_criteria")]),
    ({"optimizer": {"names": ["sgd"]}}, [("optimizer.names", "optimizer.name")]),
    ({"misc": {"seeds": [1, 2]}}, [("misc.seeds", "misc.seed")]),
    ({"optimizer_g": {"lr": 0.1}, "optimizer_d": {"lr": 0.1}}, []),  # a GAN's optimizers: 2 edits from a section
])
def test_a_near_miss_of_a_set_platform_key_is_a_warning(capsys, tiny_file, changes, warnings):
    opt = Options.load(tiny_file(changes))
    assert warned(capsys.readouterr().err) == [passed_on(key, right) for key, right in warnings]
    assert opt.warnings == [passed_on(key, right).removeprefix("warning: ") for key, right in warnings]


def test_a_near_miss_of_a_present_section_is_a_warning(capsys, tiny_file):
    Options.load(tiny_file({"models": {"g": 1}, "datasets": ["a"], "engines": {}}))
    assert warned(capsys.readouterr().err) == [passed_on(k, k[:-1], "a section") for k in ("models", "datasets",
                                                                                          "engines")]


# a plugin provides the component: its near misses warn even when the platform key is not set
@pytest.mark.parametrize("changes, drop, key, right", [
    ({"dataset": {"import": "my.datasets", "batch_sise": 3}}, ["dataset.batch_size"], "dataset.batch_sise",
     "dataset.batch_size"),
    ({"engine": {"import": "my.engine", "nb_epoch": 3}}, ["engine.nb_epochs"], "engine.nb_epoch", "engine.nb_epochs"),
    ({"engine": {"import": "my.engine", "devices": [0]}}, [], "engine.devices", "engine.device"),
    ({"optimizer": {"import": "my.optim", "lrr": 3}}, ["optimizer.lr"], "optimizer.lrr", "optimizer.lr"),
    ({"model": {"import": "my.gan", "criterion_d": {}}}, ["model.criterion"], "model.criterion_d", "model.criterion"),
    ({"model": {"name": "my_gan", "criterion_d": {}}}, ["model.criterion"], "model.criterion_d", "model.criterion"),
])
def test_a_near_miss_in_a_plugins_section_is_a_warning(capsys, tiny_file, changes, drop, key, right):
    Options.load(near_miss_file(tiny_file, changes, drop))
    assert warned(capsys.readouterr().err) == [passed_on(key, right)]


def test_the_builtin_model_names_are_the_platforms():
    from bootstrap_repro.models._factory import MODELS

    assert _schema.BUILTIN_MODELS == set(MODELS)


def test_a_warning_is_printed_once_per_command_and_the_run_goes_on(capsys, tiny_file, tmp_path):
    from bootstrap_repro.record import CONTAINER_ENV
    from bootstrap_repro.record._env import SLURM_ENV
    from bootstrap_repro.sweep import TRIAL_ENV

    # (the built-in dataset refuses keys it does not take, dataset.val_split included: misc is the platform's alone)
    code, _, err = run_cli(capsys, "run", "-o", str(tiny_file({"misc": {"seeds": [1, 2]}, "models": {"d": 1}})))
    assert code == 0, err
    assert warned(err) == [passed_on("models", "model", "a section"), passed_on("misc.seeds", "misc.seed")]
    assert (tmp_path / "exp" / "ckpt_last_model.pth.tar").is_file()
    # a process that a command starts to run the experiment (container, Slurm job, trial, torchrun worker) is quiet
    assert {CONTAINER_ENV, SLURM_ENV, TRIAL_ENV, "TORCHELASTIC_RUN_ID"} == set(options_module.INNER_PROCESS_ENV)


@pytest.mark.parametrize("name", options_module.INNER_PROCESS_ENV)
def test_inner_processes_do_not_warn_again(capsys, tiny_file, monkeypatch, name):
    monkeypatch.setenv(name, "1")
    assert Options.load(tiny_file({"dataset": {"val_split": 0.1}})).warnings != []
    assert capsys.readouterr().err == ""


def test_loading_the_same_file_again_does_not_warn_again(capsys, tiny_file):
    path = tiny_file({"misc": {"seeds": [1]}})
    for _ in range(3):  # a sweep loads its base options for each trial
        Options.load(path).copy().check()
    assert warned(capsys.readouterr().err) == [passed_on("misc.seeds", "misc.seed")]


def sweep_over(tmp_path, options):
    """A sweep file over the options file ``options`` (one float param: each value is checked on a copy)."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "sweep": {"options": str(options), "dir": str(tmp_path / "sweep"), "objective": "eval_epoch.loss",
                  "direction": "minimize", "n_trials": 1},
        "params": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5}}}))
    return sweep


def test_a_sweeps_base_options_warn_once(capsys, tiny_file, tmp_path):
    from bootstrap_repro.sweep import load_sweep

    load_sweep(sweep_over(tmp_path, tiny_file({"dataset": {"val_split": 0.1}})))
    assert warned(capsys.readouterr().err) == [passed_on("dataset.val_split", "dataset.eval_split")]


def test_resuming_an_exp_dir_whose_saved_options_have_a_near_miss(capsys, tiny_file, tmp_path):
    """The saved options ran before (an older version, bootstrap.pytorch): a near miss there only warns."""
    assert run_cli(capsys, "run", "-o", str(tiny_file()))[0] == 0
    saved = tmp_path / "exp" / "options.yaml"
    tree = yaml.safe_load(saved.read_text())
    tree["misc"]["sed"] = tree["misc"].pop("seed")  # a key a fresh run refuses
    saved.write_text(yaml.safe_dump(tree, sort_keys=False))
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(yaml.safe_dump({**tree, "exp": {"dir": str(tmp_path / "other")}}, sort_keys=False))
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(fresh)],
                     f"misc.sed: unknown option; did you mean misc.seed? (in fresh.yaml; {PLUGIN})")
    code, _, err = run_cli(capsys, "run", "-o", str(saved), "--exp.resume", "last", "--engine.nb_epochs", "3")
    assert code == 0, err
    assert warned(err) == [passed_on("misc.sed", "misc.seed")]
    assert json.loads((tmp_path / "exp" / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]
    # the saved options, read without --exp.resume (a rerun, `bootstrap-repro view`), and a segment's copy
    assert Options.load(saved).warnings == [passed_on("misc.sed", "misc.seed").removeprefix("warning: ")]
    assert options_module.is_saved_options(tmp_path / "exp" / "repro" / "options_0.yaml")
    assert not options_module.is_saved_options(fresh)


def test_a_flag_of_a_typo_says_the_same(capsys, tiny_file, tmp_path):
    opts = str(tiny_file())
    # a key the file lacks: refused as an unknown flag (as the seed did)
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--engine.nb_epoch", "5"],
                     "--engine.nb_epoch: unknown option; did you mean --engine.nb_epochs? (`-h` lists them all)")
    # the case of a flag is ignored too, as in a file
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--engine.NB_EPOCHS", "5"],
                     "--engine.NB_EPOCHS: unknown option; did you mean --engine.nb_epochs? (`-h` lists them all)")
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--Optimizer.LRR", "5"],
                     "--Optimizer.LRR: unknown option; did you mean --optimizer.lr? (`-h` lists them all)")
    # a typo the file has: the flag is named
    opts = str(near_miss_file(tiny_file, {"engine": {"nb_epoch": 10}}, ["engine.nb_epochs"]))
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--engine.nb_epoch", "5"],
                     f"--engine.nb_epoch: unknown option; did you mean --engine.nb_epochs? ({PLUGIN})")


@pytest.mark.parametrize("changes", [
    {"database": "db"},  # the seed's own test options
    {"views": {"name": "plotly", "items": ["logs:train_epoch.loss"]}},  # the seed's later name of `view`
    {"misc": {"debug": False, "logs_name": "x", "profile": False}},
    {"engine": {"debug": False}},
    {"dataset": {"import": "my.datasets", "dir_vg": "d", "dirs": ["a"], "proc_split": "train", "nans": 1000,
                 "batch_sampler": "x", "minwcount": 0, "dim": 3}},
    {"optimizer": {"import": "my.optim", "lr_decay_rate": 0.5, "clip_grad": 0.25, "lr_decay_epochs": [1]}},
    {"model": {"import": "my.model", "with_classif": True}},
    {"pbt": {"n": 1}, "nested": {"message": "x"}, "comment": "x"},
])
def test_seed_projects_keys_pass(capsys, tiny_file, changes):
    Options.load(tiny_file(changes))  # keys of bootstrap.pytorch projects (block, murel, rubi, recipe1m...)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("key, known, expected", [
    ("nb_epoch", "nb_epochs", True), ("resum", "resume", True), ("lrr", "lr", True), ("enigne", "engine", True),
    ("epx", "exp", True), ("NB_EPOCHS", "nb_epochs", True), ("nb_epoc", "nb_epochs", True),
    ("dim", "dir", False), ("dirs", "dir", False), ("database", "dataset", False), ("debug", "device", False),
    ("lr_decay", "lr", False), ("test_split", "eval_split", False), ("nb_classes", "nb_threads", False),
])
def test_what_a_typo_is(key, known, expected):
    assert (_schema.typo(key, [known]) == known) is expected


def test_a_section_typo_is_one_edit():
    assert _schema.typo("optimizer_g", ["optimizer"]) == "optimizer"  # a key of a section: 2 edits
    assert _schema.typo("optimizer_g", ["optimizer"], most=1) is None  # a section: 1
    assert _schema.typo("optimizers", ["optimizer"], most=1) == "optimizer"


# --------------------------------------------------------------------------- 1b. the file where a key is written
def include_pair(tmp_path, child: dict, parent: dict | None = None, child_name: str = "child.yaml"):
    """``parent.yaml`` (exp.dir, ``__include__: child``) over a child that holds the tiny options and ``child``."""
    tree = merge(TINY, child)
    tree["engine"] = {k: v for k, v in tree["engine"].items() if k not in child.get("_drop", ())}
    tree.pop("_drop", None)
    (tmp_path / child_name).parent.mkdir(parents=True, exist_ok=True)
    write_options(tmp_path / child_name, tree)
    return write_options(tmp_path / "parent.yaml", merge({"__include__": child_name,
                                                          "exp": {"dir": str(tmp_path / "exp")}}, parent or {}))


@pytest.mark.parametrize("child, parent, child_name, expected", [
    ({"engine": {"nb_epoch": 2}, "_drop": ["nb_epochs"]}, None, "child.yaml",
     f"engine.nb_epoch: unknown option; did you mean engine.nb_epochs? (in child.yaml; {PLUGIN})"),
    ({"engine": {"nb_epoch": 2}, "_drop": ["nb_epochs"]}, None, "configs/base.yaml",
     f"engine.nb_epoch: unknown option; did you mean engine.nb_epochs? (in configs/base.yaml; {PLUGIN})"),
    ({"engine": {"nb_epochs": -3}}, None, "child.yaml", "engine.nb_epochs: must be >= 1, got -3 (in child.yaml)"),
    ({"engine": {"hooks": ["./x"]}}, None, "child.yaml",
     "engine.hooks: './x' is not an absolute module name like 'my.pkg.hooks' (in child.yaml)"),
    ({"engine": {"nb_epochs": 2}}, {"engine": {"nb_epochs": -3}}, "child.yaml",  # the parent's value wins
     "engine.nb_epochs: must be >= 1, got -3 (in parent.yaml)"),
    ({"engine": {"nb_epochs": -3}}, {"engine": {"print_freq": 1}}, "child.yaml",
     "engine.nb_epochs: must be >= 1, got -3 (in child.yaml)"),
    ({"optimizer": {"lr": -1.0}}, {"optimizer": {"momentum": 0.5}}, "child.yaml",
     "optimizer.lr: must be > 0, got -1.0 (in child.yaml)"),
])
def test_an_error_names_the_included_file_where_the_key_is_written(capsys, tmp_path, child, parent, child_name,
                                                                     expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(include_pair(tmp_path, child, parent, child_name))],
                     expected)


def test_a_value_replaced_by_a_mapping_keeps_its_file(tmp_path):
    (tmp_path / "a.yaml").write_text("engine: {nb_epochs: 2, print_freq: 1}\nmodel: sgd\n")
    (tmp_path / "b.yaml").write_text("__include__: a.yaml\nengine: 3\nmodel: {name: simple}\n")
    origins: dict[str, str] = {}
    options_module.load_yaml(tmp_path / "b.yaml", origins=origins)
    assert origins == {"engine": str(tmp_path / "b.yaml"), "model.name": str(tmp_path / "b.yaml")}
    (tmp_path / "c.yaml").write_text("__include__: a.yaml\nengine: {}\n")
    origins = {}
    options_module.load_yaml(tmp_path / "c.yaml", origins=origins)
    assert origins == {"engine.nb_epochs": str(tmp_path / "a.yaml"), "engine.print_freq": str(tmp_path / "a.yaml"),
                       "model": str(tmp_path / "a.yaml")}


def test_a_sweeps_base_options_name_the_included_file(tmp_path):
    from bootstrap_repro.sweep import load_sweep

    with pytest.raises(OptionsError) as info:
        load_sweep(sweep_over(tmp_path, include_pair(tmp_path, {"engine": {"nb_epochs": -3}})))
    assert str(info.value) == "sweep.options: engine.nb_epochs: must be >= 1, got -3 (in child.yaml)"


# --------------------------------------------------------------------------- 1c. the seed's older saving criteria
@pytest.mark.parametrize("text, expected", [
    ("loss:lt", ("loss", "min")), ("accuracy_top1:gt", ("accuracy_top1", "max")), ("loss:min", ("loss", "min")),
    ("eval_epoch.acctop1:max", ("eval_epoch.acctop1", "max")), ("loss", ("", None)), ("loss:le", ("loss", None)),
    (":lt", ("", None)),
])
def test_split_criterion(text, expected):
    from bootstrap_repro._metric_names import split_criterion

    assert split_criterion(text) == expected


def test_lt_and_gt_criteria_run_and_name_their_checkpoints_as_the_seed(capsys, tiny_file, tmp_path):
    from bootstrap_repro.engines import parse_saving_criteria

    assert [(c.name, c.mode) for c in parse_saving_criteria(["loss:lt", "acctop1:gt"])] == [("loss", "min"),
                                                                                          ("acctop1", "max")]
    path = tiny_file({"engine": {"saving_criteria": ["loss:lt", "accuracy_top1:gt"]}})
    code, _, err = run_cli(capsys, "run", "-o", str(path))
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "exp").glob("ckpt_best_*"))
    assert names == [f"ckpt_best_{m}_{part}.pth.tar" for m in ("accuracy_top1", "loss")
                     for part in ("engine", "model", "optimizer")]
    code, _, err = run_cli(capsys, "run", "-o", str(tmp_path / "exp" / "options.yaml"), "--exp.resume",
                             "best_loss", "--engine.nb_epochs", "3")
    assert code == 0, err


def test_a_criterion_of_no_direction_is_still_refused(capsys, tiny_file, tmp_path):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file({"engine": {"saving_criteria": ["loss:le"]}}))],
                     "engine.saving_criteria: 'loss:le' is not NAME:min or NAME:max (e.g. loss:min, acctop1:max) "
                     "(in options.yaml)")


# --------------------------------------------------------------------------- 1d. the seed's multi-view form
def seed_views(tiny_file, value: dict):
    path = tiny_file()
    tree = yaml.safe_load(path.read_text())
    tree.pop("view")
    tree["views"] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


NAMES_VALID = "(valid with names: names, items_plotly, items_tensorboard, items, file_name)"


@pytest.mark.parametrize("value, expected", [
    ({"names": ["plotly"], "item_plotly": ["logs:train_epoch.loss"]},
     f"views.item_plotly: unknown view key; did you mean items_plotly? {NAMES_VALID}"),
    ({"names": ["plotly"], "itmes": ["logs:train_epoch.loss"]},
     f"views.itmes: unknown view key; did you mean items? {NAMES_VALID}"),
    ({"names": ["plotly"], "items_plotly": [], "file_nmae": "v.html"},
     f"views.file_nmae: unknown view key; did you mean file_name? {NAMES_VALID}"),
])
def test_a_typo_in_the_seeds_multi_view_form_is_refused(capsys, tiny_file, tmp_path, value, expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(seed_views(tiny_file, value))], expected)


def test_the_seeds_multi_view_form_keeps_working(tiny_file, tmp_path):
    from bootstrap_repro import views

    specs = views.parse_view_option({"names": ["plotly", "tensorboard"], "items_plotly": ["logs:a.b"],
                                     "items_tensorboard": ["logs:c.d"], "file_name": "v.html", "plot_width": 900},
                                    "views")
    assert [(s.name, s.file_name) for s in specs] == [("plotly", "v.html"), ("tensorboard", "view.html")]
    (spec,) = views.parse_view_option({"names": "plotly", "items": ["logs:a.b"]}, "views")
    assert spec.panels[0].items[0].key == "a.b"


# --------------------------------------------------------------------------- 2. duplicate keys
def test_a_duplicate_key_names_the_file_the_key_and_both_lines(capsys, tmp_path):
    opts = tmp_path / "dup.yaml"
    opts.write_text(f"exp:\n  dir: {tmp_path / 'exp'}\nengine:\n  nb_epochs: 3\n  print_freq: 0\n  nb_epochs: 4\n")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(opts)],
                     f"{opts}: duplicate key engine.nb_epochs (lines 4 and 6); YAML would keep only the last one: "
                     f"remove one of them")


@pytest.mark.parametrize("text, key, lines", [
    ("exp: {dir: a}\nengine: {}\nexp: {dir: b}\n", "exp", "1 and 3"),
    ("view:\n- a: 1\n  a: 2\n", "view[0].a", "2 and 3"),
    ("model:\n  metric:\n    topk: [1]\n    topk: [1, 2]\n", "model.metric.topk", "3 and 4"),
    ("engine: {nb_epochs: 2, nb_epochs: 3}\n", "engine.nb_epochs", "1 and 1"),
    ("1: a\n0x1: b\n", "0x1", "1 and 2"),  # the same key, spelt two ways
])
def test_duplicate_keys_anywhere(capsys, tmp_path, text, key, lines):
    opts = tmp_path / "dup.yaml"
    opts.write_text(text)
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(opts)],
                     f"{opts}: duplicate key {key} (lines {lines}); YAML would keep only the last one: remove one of them")


def test_include_and_merge_keys_override_and_are_no_duplicates(tmp_path):
    (tmp_path / "base.yaml").write_text("exp: {dir: x}\nengine:\n  nb_epochs: 3\n  print_freq: 1\n")
    (tmp_path / "child.yaml").write_text("__include__: base.yaml\nengine:\n  nb_epochs: 5\n")
    opt = Options.load(tmp_path / "child.yaml")
    assert opt["engine.nb_epochs"] == 5 and opt["engine.print_freq"] == 1
    (tmp_path / "merge.yaml").write_text("base: &b {nb_epochs: 3, print_freq: 1}\nexp: {dir: x}\n"
                                         "engine:\n  <<: *b\n  nb_epochs: 7\n")
    assert Options.load(tmp_path / "merge.yaml")["engine.nb_epochs"] == 7


# --------------------------------------------------------------------------- 3. the model does not fit the data
@pytest.mark.parametrize("changes, expected", [
    ({"model": {"network": {"nb_classes": 2}}},
     "model.network.nb_classes: the network scores 2 classes but the dataset has 4 classes; set "
     "model.network.nb_classes: 4"),
    ({"dataset": {"dim": 5}},
     "model.network.input_dim: is 8 but batch['data'] has 5 features per item; set model.network.input_dim: 5"),
    ({"model": {"criterion": {"name": "cross_entropy"}, "network": {"nb_classes": 3, "output": "logits"}}},
     "model.network.nb_classes: the network scores 3 classes but the dataset has 4 classes; set "
     "model.network.nb_classes: 4"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_the_exp_dir(capsys, tiny_file, tmp_path, changes,
                                                                          expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file(changes))], expected)
    assert not (tmp_path / "exp").exists()


class _Items(torch.utils.data.Dataset):
    """A dataset without ``nb_classes``: its labels say how many classes there are."""

    def __init__(self, label: int) -> None:
        self.label = label

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"data": torch.zeros(8), "class_id": torch.tensor(self.label if i == 1 else 0)}


def test_labels_beyond_the_class_scores_are_refused(tiny_options):
    from bootstrap_repro import datasets, models
    from bootstrap_repro.engines import Engine
    from bootstrap_repro.logger import Logger

    engine = Engine(tiny_options(), Logger(activate=False, echo=False))
    engine.dataset = datasets.factory(engine)
    engine.model = models.factory(engine)
    engine.dataset = {"eval": _Items(label=9)}
    with pytest.raises(OptionsError) as info:
        check_fit(engine)
    assert str(info.value) == ("model.network.nb_classes: the network scores 4 classes but batch['class_id'] holds "
                               "class 9 (classes count from 0); set model.network.nb_classes: 10")
    engine.dataset = {"eval": _Items(label=3)}
    check_fit(engine)  # labels 0..3 fit 4 scores


# --------------------------------------------------------------------------- 4. bounded counts
@pytest.mark.parametrize("changes, argv, expected", [
    ({"dataset": {"batch_size": 99999999999999999999}}, [],
     "dataset.batch_size: must be <= 2147483647, got 99999999999999999999 (in options.yaml)"),
    ({}, ["--dataset.batch_size", "99999999999999999999"],
     "--dataset.batch_size: must be <= 2147483647, got 99999999999999999999"),
    ({"dataset": {"nb_threads": 2**31}}, [], "dataset.nb_threads: must be <= 2147483647, got 2147483648 (in options.yaml)"),
    ({"engine": {"print_freq": 2**40}}, [], f"engine.print_freq: must be <= 2147483647, got {2**40} (in options.yaml)"),
])
def test_counts_are_bounded(capsys, tiny_file, tmp_path, changes, argv, expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file(changes)), *argv], expected)


# --------------------------------------------------------------------------- 5. small messages
@pytest.mark.parametrize("changes, expected", [
    ({"model": {"network": {"hidden": 1.5}}},
     "model.network.hidden: must be a whole number (int) or a list (e.g. [64, 64]), got 1.5 (in options.yaml)"),
    ({"model": {"metric": {"topk": 5}}}, "model.metric.topk: must be a list (e.g. [1, 5]), got 5 (in options.yaml)"),
    ({"model": {"network": {"dropout": "x"}}}, "model.network.dropout: must be a number, got 'x' (in options.yaml)"),
    ({"model": {"criterion": {"target_key": 3}}},
     "model.criterion.target_key: must be a string (quote it in YAML), got 3 (in options.yaml)"),
])
def test_a_builtin_part_option_of_the_wrong_type_names_its_key(capsys, tiny_file, tmp_path, changes, expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file(changes))], expected)


def test_a_plugin_part_keeps_its_own_types(tiny_file):
    Options.load(tiny_file({"model": {"metric": {"import": "my.metric", "topk": 5},
                                      "network": {"import": "my.net", "hidden": 1.5}}}))


def test_a_flag_with_no_name(tiny_file):
    with pytest.raises(OptionsError) as info:
        Options.load(tiny_file(), ["--=x"])
    assert str(info.value) == "--=x: no option name before '='; give options as --key.path VALUE (e.g. --engine.nb_epochs 5)"


# --------------------------------------------------------------------------- 6. docker: a pull that fails at once
def _client(pull):  # a Docker SDK client whose engine lacks the image
    import docker

    def get(name):
        raise docker.errors.ImageNotFound("no such image")

    return SimpleNamespace(images=SimpleNamespace(get=get, pull=pull))


def test_a_pull_that_fails_at_once_is_the_error_line_alone():
    docker = pytest.importorskip("docker")
    from bootstrap_repro.runtimes._docker import ImageNotFoundError, _get_or_pull

    def pull(name):
        raise docker.errors.APIError("no registry")

    log = io.StringIO()
    with pytest.raises(ImageNotFoundError) as info:
        _get_or_pull(_client(pull), "base:1", "runtime.docker.image", log, "docker load it")
    assert str(info.value) == ("runtime.docker.image: image 'base:1' is not on this Docker engine and pulling it "
                               "failed (no registry); docker load it")
    assert log.getvalue() == ""


def test_a_slow_pull_says_so(monkeypatch):
    import threading

    pytest.importorskip("docker")
    from bootstrap_repro.runtimes._docker import _get_or_pull

    timer = threading.Timer
    monkeypatch.setattr(threading, "Timer", lambda interval, fn: timer(0.01, fn))  # "a while": 2 s in the code

    def pull(name):
        time.sleep(0.5)
        return "image"

    log = io.StringIO()
    assert _get_or_pull(_client(pull), "base:1", "runtime.docker.image", log, "") == "image"
    assert log.getvalue() == "docker: pulling base:1 ...\n"
