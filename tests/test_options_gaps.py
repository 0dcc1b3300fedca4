"""The gaps an adversarial review found in the options checks, each with its exact one-line error.

Typos in platform keys, duplicate YAML keys, a model that does not fit the data, unbounded counts,
odd values where a list is expected, and the Docker runtime's pull note. Exit code 2, one
``error:`` line, no traceback, nothing created (``assert_bad_input``).
"""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

import pytest
import torch

from bootstrap_repro import _schema
from bootstrap_repro.engines._probe import check_fit
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.options import Options

from test_cli import assert_bad_input

PLUGIN = "if it is a plugin's own key, rename it"


# --------------------------------------------------------------------------- 1. typos in platform keys
@pytest.mark.parametrize("changes, expected", [
    ({"engine": {"nb_epoch": 10}}, "engine.nb_epoch: unknown option; did you mean engine.nb_epochs?"),
    ({"exp": {"resum": "last"}}, "exp.resum: unknown option; did you mean exp.resume?"),
    ({"optimizer": {"lrr": 0.1}}, "optimizer.lrr: unknown option; did you mean optimizer.lr?"),
    ({"misc": {"sed": 3}}, "misc.sed: unknown option; did you mean misc.seed?"),
    ({"dataset": {"batch_sise": 3}}, "dataset.batch_sise: unknown option; did you mean dataset.batch_size?"),
    ({"engine": {"nb_epoc": 3}}, "engine.nb_epoc: unknown option; did you mean engine.nb_epochs?"),  # 2 edits, 9 chars
    ({"engine": {"Saving_criteria": []}},
     "engine.Saving_criteria: unknown option; did you mean engine.saving_criteria?"),
    ({"runtime": {"slurm": {"partiton": "gpu"}}},
     "runtime.slurm.partiton: unknown option; did you mean runtime.slurm.partition?"),
    ({"runtime": {"docker": {"imgae": "x"}}}, "runtime.docker.imgae: unknown option; did you mean runtime.docker.image?"),
    ({"model": {"netwrok": {"name": "mlp"}}}, "model.netwrok: unknown option; did you mean model.network?"),
    # a plugin's dataset or engine: the platform still reads dataset.batch_size and engine.nb_epochs
    ({"dataset": {"import": "my.datasets", "batch_sise": 3}},
     "dataset.batch_sise: unknown option; did you mean dataset.batch_size?"),
    ({"engine": {"import": "my.engine", "nb_epoch": 3}}, "engine.nb_epoch: unknown option; did you mean engine.nb_epochs?"),
])
def test_a_near_miss_of_a_platform_key_is_refused(capsys, tiny_file, tmp_path, changes, expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file(changes))], f"{expected} (in options.yaml; {PLUGIN})")


def test_a_near_miss_of_a_section_is_refused(capsys, tiny_file, tmp_path):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file({"enigne": {"nb_epochs": 3}}))],
                     "enigne: unknown section; did you mean engine? (in options.yaml; if it is a plugin's own "
                     "section, rename it)")


def test_a_flag_of_a_typo_says_the_same(capsys, tiny_file, tmp_path):
    opts = str(tiny_file())
    # a key the file lacks: refused as an unknown flag (as the seed did)
    assert_bad_input(capsys, tmp_path, ["run", "-o", opts, "--engine.nb_epoch", "5"],
                     "--engine.nb_epoch: unknown option; did you mean --engine.nb_epochs? (`-h` lists them all)")
    # a typo the file has: the flag is named
    opts = str(tiny_file({"engine": {"nb_epoch": 10}}))
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
def test_seed_projects_keys_pass(tiny_file, changes):
    Options.load(tiny_file(changes))  # keys of bootstrap.pytorch projects (block, murel, rubi, recipe1m...)


@pytest.mark.parametrize("key, known, expected", [
    ("nb_epoch", "nb_epochs", True), ("resum", "resume", True), ("lrr", "lr", True), ("enigne", "engine", True),
    ("epx", "exp", True), ("NB_EPOCHS", "nb_epochs", True), ("nb_epoc", "nb_epochs", True),
    ("dim", "dir", False), ("dirs", "dir", False), ("database", "dataset", False), ("debug", "device", False),
    ("lr_decay", "lr", False), ("test_split", "eval_split", False), ("nb_classes", "nb_threads", False),
])
def test_what_a_typo_is(key, known, expected):
    assert (_schema.typo(key, [known]) == known) is expected


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
    ({"dataset": {"nb_threads": 5000}}, [], "dataset.nb_threads: must be <= 1024, got 5000 (in options.yaml)"),
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
