"""Sweep-file input that used to get past the checks: each is one ``error:`` line, exit 2, and nothing
created (no sweep dir, no journal, no trial), refused before the study starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrap_repro.cli import main
from bootstrap_repro.sweep import AlgoSpec, SweepError, load_sweep, make_sampler
from bootstrap_repro.sweep import _algorithms
from bootstrap_repro.sweep._spec import MAX_TRIALS, parse_count

from sweep_helpers import write_sweep

LR = {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}
BIG = 10**20


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def refused(capsys, tmp_path: Path, f: Path, expected: str, *args: str) -> None:
    """``sweep f``: exit 2, exactly ``error: expected``, no traceback, nothing new under tmp_path (no sweep dir)."""
    before = snapshot(tmp_path)
    code = main(["sweep", str(f), *args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == f"error: {expected}"
    assert snapshot(tmp_path) == before, "bad input must not create anything"
    assert not (tmp_path / "sweep").exists() and not out


# --------------------------------------------------------------------------- 1. sampler/pruner argument values
@pytest.mark.parametrize("sampler, expected", [
    ({"name": "tpe", "n_startup_trials": "abc"}, "sweep.sampler.n_startup_trials: expected an int, got 'abc'"),
    ({"name": "tpe", "n_startup_trials": 0, "gamma": 0.5},
     "sweep.sampler.gamma: takes a Python function or object, which a sweep file cannot hold; remove it "
     "(Optuna's default is used)"),
    ({"name": "tpe", "n_startup_trials": BIG}, f"sweep.sampler.n_startup_trials: must be <= 2147483647, got {BIG}"),
    ({"name": "tpe", "n_ei_candidates": -5}, "sweep.sampler.n_ei_candidates: must be >= 1, got -5"),
    ({"name": "tpe", "n_startup_trials": True}, "sweep.sampler.n_startup_trials: expected an int, got True"),
    ({"name": "tpe", "prior_weight": 0}, "sweep.sampler.prior_weight: must be > 0, got 0"),
    ({"name": "tpe", "prior_weight": float("inf")}, "sweep.sampler.prior_weight: expected a finite number, got inf"),
    ({"name": "tpe", "multivariate": "yes"}, "sweep.sampler.multivariate: expected true, false or null, got 'yes'"),
    ({"name": "tpe", "group": None}, "sweep.sampler.group: expected true or false, got None"),
    ({"name": "random", "seed": -1}, "sweep.sampler.seed: must be >= 0, got -1"),
    ({"name": "random", "seed": 2**32}, "sweep.sampler.seed: must be <= 4294967295, got 4294967296"),
    ({"name": "random", "seed": "0"}, "sweep.sampler.seed: expected an int or null, got '0'"),
])
def test_sampler_argument_values(capsys, tmp_path, sampler, expected):
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"sampler": sampler}), expected)


@pytest.mark.parametrize("pruner, expected", [
    ({"name": "median", "n_warmup_steps": BIG}, f"sweep.pruner.n_warmup_steps: must be <= 2147483647, got {BIG}"),
    ({"name": "median", "n_warmup_steps": "2"}, "sweep.pruner.n_warmup_steps: expected an int, got '2'"),
    ({"name": "median", "interval_steps": 0}, "sweep.pruner.interval_steps: must be >= 1, got 0"),
    ({"name": "hyperband", "max_resource": BIG}, f"sweep.pruner.max_resource: must be <= 2147483647, got {BIG}"),
    ({"name": "hyperband", "max_resource": "big"}, "sweep.pruner.max_resource: expected auto or an int, got 'big'"),
    ({"name": "hyperband", "reduction_factor": 1}, "sweep.pruner.reduction_factor: must be >= 2, got 1"),
    ({"name": "hyperband", "min_resource": 10, "max_resource": 5},
     "sweep.pruner.max_resource: `min_resource <= max_resource` must hold, but got (min_resource=10, max_resource=5)"),
])
def test_pruner_argument_values(capsys, tmp_path, pruner, expected):
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"pruner": pruner}), expected)


def test_an_argument_optuna_refuses_only_at_a_later_trial_is_found_by_the_probe(tmp_path, monkeypatch):
    """Without its declared type, ``gamma: 0.5`` passes Optuna's constructor and only fails once TPE's model
    runs (after n_startup_trials): the probe study (run again with startup counts 0) names it up front."""
    monkeypatch.delitem(_algorithms.SAMPLER_ARGS["tpe"], "gamma")
    f = write_sweep(tmp_path, sweep={"sampler": {"name": "tpe", "gamma": 0.5}})
    with pytest.raises(SweepError) as info:
        load_sweep(f)
    assert str(info.value) == ("sweep.sampler.gamma: Optuna refused 0.5 ('float' object is not callable); "
                               "fix or remove it")
    assert not (tmp_path / "sweep").exists()


def test_valid_arguments_pass_the_probe(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, sweep={
        "sampler": {"name": "tpe", "seed": 3, "n_startup_trials": 2, "multivariate": True, "prior_weight": 0.5},
        "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": 3, "reduction_factor": 2}}))
    assert spec.sampler.kwargs["n_startup_trials"] == 2 and spec.pruner.kwargs["max_resource"] == 3
    assert not (tmp_path / "sweep").exists()


# --------------------------------------------------------------------------- 2. sweep.dir as exp.dir
def shown(value: str) -> str:
    """A value as an error line shows it (its repr, cut at 60 characters)."""
    return repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."


def test_sweep_dir_is_checked_like_exp_dir(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    newline = str(tmp_path / "a\nb")
    cases = [
        ("/proc/x", "sweep.dir: is under a kernel file system (/proc, /sys, /dev); choose a dir on a disk, got '/proc/x'"),
        ("a\0b", "sweep.dir: a path cannot hold a NUL character, got 'a\\x00b'"),
        ("x" * 300, f"sweep.dir: a path component is longer than the system's limit (255 bytes), got {shown('x' * 300)}"),
        (newline, f"sweep.dir: a path cannot hold a control character (newline, tab...), got {shown(newline)}"),
        (str(a_file / "sub"), f"sweep.dir: cannot create {a_file / 'sub'}: {a_file} is a file, not a directory; "
                              f"choose another sweep.dir"),
        (str(a_file), f"sweep.dir: {a_file} is a file, not a directory; choose another sweep.dir"),
    ]
    for value, expected in cases:
        refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"dir": value}), expected)
    assert not Path("/proc/x").exists()


def test_a_sweep_dir_that_cannot_be_written(capsys, tmp_path, monkeypatch):
    f = write_sweep(tmp_path, sweep={"dir": str(tmp_path / "ro" / "sweep")})
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path / "ro" else real(p, mode, **kw))
    refused(capsys, tmp_path, f, f"sweep.dir: cannot create {tmp_path / 'ro' / 'sweep'}: {tmp_path / 'ro'} is not "
                                 f"writable (permission denied); choose a sweep.dir in a writable directory")


# --------------------------------------------------------------------------- 3. bounded counts
@pytest.mark.parametrize("sweep, expected", [
    ({"n_trials": BIG}, f"sweep.n_trials: must be <= {MAX_TRIALS}, got {BIG}"),
    ({"n_trials": MAX_TRIALS + 1}, f"sweep.n_trials: must be <= 1000000, got 1000001"),
    ({"max_retries": BIG}, f"sweep.max_retries: must be <= 100, got {BIG}"),
    ({"max_retries": 101}, "sweep.max_retries: must be <= 100, got 101"),
    ({"n_trials": 0}, "sweep.n_trials: expected a positive int, got 0"),
])
def test_counts_are_bounded(capsys, tmp_path, sweep, expected):
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep=sweep), expected)


def test_count_flags_name_the_bound(tmp_path):
    f = write_sweep(tmp_path)
    assert parse_count("--n-trials", None) is None and parse_count("--n-trials", " 12 ") == 12
    for bad in ("two", "-1", "1e3", "²", "", "9" * 5000):
        with pytest.raises(SweepError, match=r"^--jobs: expected a positive int, got "):
            parse_count("--jobs", bad)
    with pytest.raises(SweepError) as info:
        load_sweep(f, n_trials=parse_count("--n-trials", str(BIG)))
    assert str(info.value) == f"--n-trials: must be <= 1000000, got {BIG}"
    cpus = len(os.sched_getaffinity(0))
    with pytest.raises(SweepError) as info:
        load_sweep(f, jobs=parse_count("--jobs", str(BIG)))
    assert str(info.value) == (f"--jobs: {BIG} parallel trials asked, this machine has {cpus} CPU(s); "
                               f"use at most {4 * cpus}")
    assert not (tmp_path / "sweep").exists()


def test_count_flags_on_the_command_line(capsys, tmp_path):
    f = write_sweep(tmp_path)
    refused(capsys, tmp_path, f, f"--n-trials: must be <= 1000000, got {BIG}", "--n-trials", str(BIG))
    cpus = len(os.sched_getaffinity(0))
    refused(capsys, tmp_path, f, f"--jobs: {BIG} parallel trials asked, this machine has {cpus} CPU(s); "
                                 f"use at most {4 * cpus}", "--jobs", str(BIG))


# --------------------------------------------------------------------------- 4. per-trial seeds
def test_per_trial_seeds_wrap_around_2_to_the_32(tmp_path):
    """Decision: trial i's seed is (seed + i) % 2**32; a sweep seeded 4294967295 runs on (trial 1 gets seed 0),
    and every seed + i below 2**32 is the seed it always was."""
    import optuna

    spec = load_sweep(write_sweep(tmp_path, sweep={"sampler": {"name": "random", "seed": 2**32 - 1}}))
    lr = spec.params[0]

    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        return [lr.suggest(study.ask()) for _ in range(3)]

    assert draws(make_sampler(spec.sampler, spec.params, 1)) == draws(optuna.samplers.RandomSampler(seed=0))
    assert draws(make_sampler(spec.sampler, spec.params, 0)) == draws(optuna.samplers.RandomSampler(seed=2**32 - 1))
    ordinary = AlgoSpec("random", {"seed": 5})
    assert draws(make_sampler(ordinary, spec.params, 3)) == draws(optuna.samplers.RandomSampler(seed=8))


# --------------------------------------------------------------------------- 5. names in categorical choices
@pytest.mark.parametrize("key, choices, options, expected", [
    ("optimizer.name", ["sgd", "adma"], None,
     "'adma' is not a valid value: unknown name 'adma'; did you mean adam? (valid: adam, adamw, sgd; or set "
     "optimizer.import to a module with a factory)"),
    ("model.network.name", ["mlp", "mpl"], None,
     "'mpl' is not a valid value: unknown name 'mpl'; did you mean mlp? (valid: lenet, mlp; or set "
     "model.network.import to a module with a factory)"),
    ("model.metric.name", ["accuracy", "acuracy"], None,
     "'acuracy' is not a valid value: unknown name 'acuracy'; did you mean accuracy? (valid: accuracy; or set "
     "model.metric.import to a module with a factory)"),
    ("dataset.name", ["synthetic", "synthetc"], None,
     "'synthetc' is not a valid value: unknown name 'synthetc'; did you mean synthetic? (valid: digits, synthetic; "
     "or set dataset.import to a module with a factory)"),
    ("engine.name", ["default", "defualt"], {"engine": {"name": "default"}},
     "'defualt' is not a valid value: unknown name 'defualt'; did you mean default? (valid: default, logger; or set "
     "engine.import to a module with a factory)"),
    ("optimizer.lr_scheduler.name", ["step", "stpe"], {"optimizer": {"lr_scheduler": {"name": "step", "step_size": 1}}},
     "'stpe' is not a valid value: unknown name 'stpe'; did you mean step? (valid: cosine, step, or a "
     "torch.optim.lr_scheduler class name such as StepLR)"),
    ("view.name", ["plotly", "plotyl"], {"view": {"name": "plotly", "items": ["logs:train_epoch.loss"]}},
     "'plotyl' is not a valid value: unknown view 'plotyl'; did you mean plotly? (valid: plotly, tensorboard; or set "
     "view.import to a module with a factory)"),
])
def test_a_typo_in_a_builtin_name_choice(capsys, tmp_path, key, choices, options, expected):
    f = write_sweep(tmp_path, params={**LR, key: {"type": "categorical", "choices": choices}}, options=options)
    refused(capsys, tmp_path, f, f"params.{key}: {expected}")


def test_names_of_a_plugin_section_are_not_checked(tmp_path):
    """With ``optimizer.import`` the module builds the optimizer: its names are its own."""
    f = write_sweep(tmp_path, params={"optimizer.name": {"type": "categorical", "choices": ["sgd", "my_own"]}},
                    options={"optimizer": {"import": "my_plugin.optim"}})
    assert load_sweep(f).params[0].choices == ("sgd", "my_own")


def test_enqueued_names_are_choices(capsys, tmp_path):
    f = write_sweep(tmp_path, params={**LR, "optimizer.name": {"type": "categorical", "choices": ["sgd", "adam"]}},
                    enqueue=[{"optimizer.name": "adma"}])
    refused(capsys, tmp_path, f, "enqueue[0].optimizer.name: 'adma' is outside the param's range "
                                 "{'type': 'categorical', 'choices': ['sgd', 'adam']}")


# --------------------------------------------------------------------------- 6. unknown param keys
def test_an_option_the_builtin_takes_but_the_file_does_not_set(capsys, tmp_path):
    """The run refuses ``--optimizer.weight_decay X`` when the options file has no weight_decay (an override
    only changes a key the file sets): so does the sweep, saying how to make it searchable."""
    f = write_sweep(tmp_path, params={"optimizer.weight_decay": {"type": "float", "low": 0.0, "high": 0.1}})
    refused(capsys, tmp_path, f, "params.optimizer.weight_decay: not in " f"{tmp_path / 'tiny.yaml'}, and a trial can only "
            "change options the file sets; optimizer 'sgd' takes weight_decay: add it under optimizer in "
            f"{tmp_path / 'tiny.yaml'} to search it")
    f = write_sweep(tmp_path, params={"model.network.dropout": {"type": "float", "low": 0.1, "high": 0.5}})
    refused(capsys, tmp_path, f, f"params.model.network.dropout: not in {tmp_path / 'tiny.yaml'}, and a trial can only "
            f"change options the file sets; network 'mlp' takes dropout: add it under model.network in "
            f"{tmp_path / 'tiny.yaml'} to search it")


def test_once_the_file_sets_it_the_range_is_accepted(tmp_path):
    f = write_sweep(tmp_path, params={"optimizer.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
                                      "model.network.dropout": {"type": "float", "low": 0.1, "high": 0.5}},
                    options={"optimizer": {"weight_decay": 0.0}, "model": {"network": {"dropout": 0.0}}})
    assert [p.key for p in load_sweep(f).params] == ["optimizer.weight_decay", "model.network.dropout"]


FLOAT = {"type": "float", "low": 0.1, "high": 0.5}
STEP = {"optimizer": {"lr_scheduler": {"name": "step", "step_size": 1, "gamma": 0.1}}}


@pytest.mark.parametrize("key, rng, options, expected", [
    ("optimizer.lr_scheduler.gama", FLOAT, STEP, "; did you mean optimizer.lr_scheduler.gamma?"),
    ("optimizer.lr_scheduler.gama", FLOAT, None, "; did you mean optimizer.lr_scheduler.gamma?"),
    ("optimizer.foo", FLOAT, None, ", and optimizer 'sgd' has no option 'foo'"),
    ("engine.nb_epoch", {"type": "int", "low": 1, "high": 3}, None, "; did you mean engine.nb_epochs?"),
    ("model.network.learning_rate", FLOAT, None, ", and network 'mlp' has no option 'learning_rate'"),
])
def test_suggestions_stay_in_the_section(capsys, tmp_path, key, rng, options, expected):
    opts = tmp_path / "tiny.yaml"
    f = write_sweep(tmp_path, params={key: rng}, **({"options": options} if options else {}))
    refused(capsys, tmp_path, f, f"params.{key}: unknown option in {opts}{expected} "
                                 f"(`bootstrap-repro run -o {opts} -h` lists them)")


# --------------------------------------------------------------------------- 7. misplaced keys
def test_a_misspelled_name_key_of_the_pruner(capsys, tmp_path):
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"pruner": {"nmae": "median"}}),
            "sweep.pruner.nmae: unknown key; did you mean name?")
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"pruner": {"n_warmup_steps": 2}}),
            "sweep.pruner.n_warmup_steps: unknown argument of none, the default pruner; set sweep.pruner.name "
            "(valid: median, hyperband, none)")
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"pruner": {"name": "none", "n_warmup_steps": 2}}),
            "sweep.pruner.n_warmup_steps: unknown argument of none (valid: none; see optuna.pruners.NopPruner)")


def test_nested_params_ask_for_a_dotted_key(capsys, tmp_path):
    f = write_sweep(tmp_path, params={"optimizer": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}})
    refused(capsys, tmp_path, f, "params.optimizer: write the option as a dotted key (params: {optimizer.lr: {...}})")
    f = write_sweep(tmp_path, params={"model": {"network": {"hidden": {"type": "int", "low": 4, "high": 8}}}})
    refused(capsys, tmp_path, f,
            "params.model: write the option as a dotted key (params: {model.network.hidden: {...}})")


# --------------------------------------------------------------------------- 8. control characters
@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "bell\x07"])
def test_a_sweep_name_is_one_line(capsys, tmp_path, name):
    refused(capsys, tmp_path, write_sweep(tmp_path, sweep={"name": name}),
            f"sweep.name: a name cannot hold a control character (newline, tab...), got {name!r}")
