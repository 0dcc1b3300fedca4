"""The sweep file and flags: bad input is one line, exit 2, nothing created; the search space and helpers."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from bootstrap_repro.cli import main
from bootstrap_repro.sweep import (
    MAX_ATTEMPTS,
    ParamSpec,
    Sweep,
    SweepError,
    best_value,
    ended_by_signal,
    gpus_for,
    is_lost,
    load_sweep,
    make_sampler,
    objective_series,
    space_diff,
    visible_gpus,
)
from bootstrap_repro.sweep._spec import override_args

from sweep_helpers import write_sweep

LR = {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def bad_input(capsys, tmp_path: Path, argv: list[str], expected: str) -> None:
    before = snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"error: {expected}"
    assert snapshot(tmp_path) == before, "bad input must not create files"


def test_unknown_param_key_suggests_the_option(capsys, tmp_path):
    f = write_sweep(tmp_path, params={"optimizer.lrr": LR["optimizer.lr"]})
    opts = tmp_path / "tiny.yaml"
    bad_input(capsys, tmp_path, ["sweep", str(f)],
              f"params.optimizer.lrr: unknown option in {opts}; did you mean optimizer.lr? "
              f"(`bootstrap-repro run -o {opts} -h` lists them)")


@pytest.mark.parametrize("spec, expected", [
    ({"type": "float", "low": 3, "high": 1},
     "params.optimizer.lr: `low <= high` must hold, but got (low=3, high=1)"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True},
     "params.optimizer.lr: `low > 0` must hold for log scale, but got (low=0.0, high=1.0)"),
    ({"type": "categorical", "choices": []},
     "params.optimizer.lr.choices: expected a non-empty list of values, got []"),
    ({"type": "flaot", "low": 0.1, "high": 1.0},
     "params.optimizer.lr.type: expected one of float, int, categorical, got 'flaot'; did you mean float?"),
    ({"type": "float", "low": 0.1, "hihg": 1.0},
     "params.optimizer.lr.hihg: unknown key for a float param; did you mean high? (valid: type, low, high, log, step)"),
    ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1},
     "params.optimizer.lr: `step` and `log: true` cannot be used together, but got (step=0.1, log=true)"),
    ({"type": "categorical", "choices": ["fast"]},
     "params.optimizer.lr: 'fast' is not a valid value: expected a float, got 'fast'"),
    ({"type": "float", "low": 0.0, "high": 1.0},  # the option's declared range: each trial would refuse lr 0
     "params.optimizer.lr: 0.0 is not a valid value: must be > 0, got 0.0"),
    ({"type": "categorical", "choices": [0.1, -1.0]},
     "params.optimizer.lr: -1.0 is not a valid value: must be > 0, got -1.0"),
])
def test_bad_ranges(capsys, tmp_path, spec, expected):
    f = write_sweep(tmp_path, params={"optimizer.lr": spec})
    bad_input(capsys, tmp_path, ["sweep", str(f)], expected)


def test_an_int_range_outside_the_options_declared_range(capsys, tmp_path):
    f = write_sweep(tmp_path, params={"dataset.batch_size": {"type": "int", "low": 0, "high": 32}})
    bad_input(capsys, tmp_path, ["sweep", str(f)],
              "params.dataset.batch_size: 0 is not a valid value: must be >= 1, got 0")


def test_float_range_on_an_int_option(capsys, tmp_path):
    f = write_sweep(tmp_path, params={"model.network.hidden": {"type": "float", "low": 4, "high": 32}})
    bad_input(capsys, tmp_path, ["sweep", str(f)],
              f"params.model.network.hidden: the option is an int (16 in {tmp_path / 'tiny.yaml'}); use type: int")


@pytest.mark.parametrize("sweep, expected", [
    ({"sampler": {"name": "tpee"}}, "sweep.sampler: unknown sampler 'tpee'; did you mean tpe? (valid: tpe, random, grid, cmaes)"),
    ({"pruner": {"name": "medain"}}, "sweep.pruner: unknown pruner 'medain'; did you mean median? (valid: median, hyperband, none)"),
    ({"pruner": "successive"}, "sweep.pruner: unknown pruner 'successive' (valid: median, hyperband, none)"),
    ({"objective": "acc"}, "sweep.objective: expected '<train|eval>_epoch.<name>' such as eval_epoch.acctop1 "
                           "(a value logged at the end of each epoch), got 'acc'"),
    ({"direction": "max"}, "sweep.direction: expected maximize or minimize, got 'max'"),
    ({"n_trials": 0}, "sweep.n_trials: expected a positive int, got 0"),
    ({"storage": "mysql://x"}, "sweep.storage: expected null (a file storage in sweep.dir) or a "
                               "postgresql://user:password@host/db URL, got 'mysql://x'"),
    ({"jbos": 2}, "sweep.jbos: unknown key; did you mean jobs? (valid: options, dir, name, objective, direction, "
                  "n_trials, jobs, sampler, pruner, storage, max_retries)"),
    ({"max_retries": -1}, "sweep.max_retries: expected a whole number >= 0, got -1"),
    ({"max_retries": "3"}, "sweep.max_retries: expected a whole number >= 0, got '3'"),
    ({"max_retry": 3}, "sweep.max_retry: unknown key; did you mean max_retries? (valid: options, dir, name, objective, "
                       "direction, n_trials, jobs, sampler, pruner, storage, max_retries)"),
])
def test_bad_sweep_keys(capsys, tmp_path, sweep, expected):
    f = write_sweep(tmp_path, sweep=sweep)
    bad_input(capsys, tmp_path, ["sweep", str(f)], expected)


def test_unknown_sampler_argument_lists_the_valid_ones(capsys, tmp_path):
    f = write_sweep(tmp_path, sweep={"pruner": {"name": "median", "n_warmup_step": 2}})
    code = main(["sweep", str(f)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: sweep.pruner.n_warmup_step: unknown argument of median; did you mean n_warmup_steps? "
                          "(valid: n_startup_trials, n_warmup_steps, interval_steps, n_min_trials"), err


def test_flags_and_overrides(capsys, tmp_path):
    f = write_sweep(tmp_path)
    bad_input(capsys, tmp_path, ["sweep", str(f), "--jobs", "two"], "--jobs: expected a positive int, got 'two'")
    bad_input(capsys, tmp_path, ["sweep", str(f), "--exp.dir", "x"],
              "--exp.dir: set by the sweep (each trial runs in <sweep.dir>/trials/<number>); remove it")
    bad_input(capsys, tmp_path, ["sweep", str(f), "--optimizer.lrr", "1"],
              "sweep.options: --optimizer.lrr: unknown option; did you mean --optimizer.lr? (`-h` lists them all)")
    spec = load_sweep(f, ["--engine.nb_epochs", "3"], n_trials=7, jobs=3)
    assert (spec.n_trials, spec.jobs, spec.overrides) == (7, 3, ("--engine.nb_epochs", "3"))
    assert spec.trial_overrides({"optimizer.lr": 0.25}) == ["--engine.nb_epochs", "3", "--optimizer.lr", "0.25"]


def test_objective_needs_its_split(capsys, tmp_path):
    f = write_sweep(tmp_path, options={"dataset": {"eval_split": ""}})
    bad_input(capsys, tmp_path, ["sweep", str(f)],
              f"sweep.objective: eval_epoch.loss needs dataset.eval_split, which is empty in {tmp_path / 'tiny.yaml'}")


def test_unreachable_storage(capsys, tmp_path):
    pytest.importorskip("psycopg2")
    f = write_sweep(tmp_path, sweep={"storage": "postgresql://u:secret@127.0.0.1:9/db"})
    before = snapshot(tmp_path)
    assert main(["sweep", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: sweep.storage: cannot connect to postgresql://u:***@127.0.0.1:9/db (connection to server at"), err
    assert err.endswith("check the URL and that the server is running") and "secret" not in err
    assert snapshot(tmp_path) == before


def test_resuming_with_a_changed_search_space_is_refused(capsys, tmp_path):
    f = write_sweep(tmp_path, params={**LR, "optimizer.name": {"type": "categorical", "choices": ["sgd", "adam"]}})
    Sweep(load_sweep(f)).prepare()  # the study exists (no trial run)
    changed = write_sweep(tmp_path, params={"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.9, "log": True},
                                            "model.network.hidden": {"type": "int", "low": 4, "high": 8}})
    bad_input(capsys, tmp_path, ["sweep", str(changed)],
              f"sweep: study 'sweep' in {tmp_path / 'sweep' / 'study.journal'} was created with another search space "
              f"(optimizer.lr.high: 0.5 -> 0.9; -optimizer.name; +model.network.hidden "
              f'{{"type": "int", "low": 4, "high": 8, "log": false}}); restore the sweep file, or set a new sweep.name '
              f"or sweep.dir to start a new study")


def test_a_dir_of_another_study_is_refused(capsys, tmp_path):
    f = write_sweep(tmp_path)
    Sweep(load_sweep(f)).prepare()
    other = write_sweep(tmp_path, sweep={"name": "other"}, name="other.yaml")
    bad_input(capsys, tmp_path, ["sweep", str(other)],
              f"sweep.dir: {tmp_path / 'sweep'} holds study 'sweep' in {tmp_path / 'sweep' / 'study.journal'}, not "
              f"'other' in {tmp_path / 'sweep' / 'study.journal'}; choose another sweep.dir")


def test_enqueue_is_checked(capsys, tmp_path):
    f = write_sweep(tmp_path, enqueue=[{"optimizer.lr": 2.0}])
    bad_input(capsys, tmp_path, ["sweep", str(f)],
              "enqueue[0].optimizer.lr: 2.0 is outside the param's range "
              "{'type': 'float', 'low': 0.01, 'high': 0.5, 'log': True}")


def test_importing_the_driver_does_not_import_torch():
    import subprocess

    code = "import sys, bootstrap_repro.sweep, bootstrap_repro.sweep._pruning; assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- units
def test_param_spec_views():
    p = ParamSpec.parse("model.network.hidden", {"type": "int", "low": 4, "high": 10, "step": 3})
    assert p.grid_values() == [4, 7, 10]
    assert p.contains(7) and not p.contains(11) and not p.contains(7.0)
    f = ParamSpec.parse("optimizer.lr", {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1})
    assert f.grid_values() == [0.1, 0.2, 0.3]
    assert ParamSpec.parse("x", {"type": "float", "low": 0.1, "high": 0.3}).grid_values() is None
    c = ParamSpec.parse("engine.compile", {"type": "categorical", "choices": [True, False, None]})
    assert [override_args(c.key, v) for v in c.choices] == [
        ["--engine.compile", "true"], ["--engine.compile", "false"], ["--engine.compile"]]
    with pytest.raises(SweepError, match="choices must be distinct"):
        ParamSpec.parse("x", {"type": "categorical", "choices": [1, 1]})


def test_grid_sampler_needs_finite_values(tmp_path):
    f = write_sweep(tmp_path, sweep={"sampler": "grid"})
    with pytest.raises(SweepError, match=r"^params.optimizer.lr: the grid sampler needs a finite set of values"):
        load_sweep(f)


def test_sampler_seed_differs_per_trial(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, sweep={"sampler": {"name": "random", "seed": 5}}))
    import optuna

    def first_draw(index: int) -> float:
        study = optuna.create_study(sampler=make_sampler(spec.sampler, spec.params, index))
        return spec.params[0].suggest(study.ask())

    assert first_draw(3) == first_draw(3)
    assert first_draw(3) != first_draw(4)


def test_space_diff_is_one_line():
    old = {"params": {"a": {"type": "int", "low": 1, "high": 2}}, "objective": "eval_epoch.loss", "direction": "minimize"}
    new = {"params": {"a": {"type": "int", "low": 1, "high": 3}, "b": {"type": "categorical", "choices": [1]}},
           "objective": "eval_epoch.acc", "direction": "minimize"}
    assert space_diff(old, new) == ('objective: eval_epoch.loss -> eval_epoch.acc; a.high: 2 -> 3; '
                                    '+b {"type": "categorical", "choices": [1]}')
    assert space_diff(old, old) == ""


def test_objective_value_is_the_best_epoch():
    logs = {"eval_epoch.epoch": [0, 1, 2], "eval_epoch.loss": [0.5, None, 0.3], "eval_epoch.acc": [None, None]}
    series = objective_series(logs, "eval_epoch.loss")
    assert series == [(0, 0.5), (1, None), (2, 0.3)]
    assert best_value(series, "minimize") == (2, 0.3)
    assert best_value(series, "maximize") == (0, 0.5)
    assert objective_series(logs, "eval_epoch.top1") is None
    assert best_value(objective_series(logs, "eval_epoch.acc"), "maximize") is None


def test_one_gpu_per_worker():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert [gpus_for(s, ["2", "3"]) for s in range(3)] == [["2"], ["3"], ["2"]]
    assert [gpus_for(s, ["0", "1", "2", "3"], 2) for s in range(2)] == [["0", "1"], ["2", "3"]]
    assert gpus_for(0, []) == []


def test_which_trials_count_toward_n_trials():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    def trial(state, **attrs):
        return create_trial(state=state, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                            value=1.0 if state == TrialState.COMPLETE else None, user_attrs=attrs)

    cases = [
        (trial(TrialState.COMPLETE, returncode=0), True),
        (trial(TrialState.PRUNED, returncode=0), True),
        (trial(TrialState.FAIL, returncode=1, error="boom"), True),  # failed on its own: a result
        (trial(TrialState.FAIL, returncode=130, lost="interrupted"), False),  # retried instead
        (trial(TrialState.FAIL), False),  # failed by a heartbeat: its driver never saw it end
        (trial(TrialState.FAIL, lost="its driver died", attempt=MAX_ATTEMPTS), True),  # no more retries
        (trial(TrialState.WAITING), False),
        (trial(TrialState.FAIL, returncode=-9, lost="killed by SIGKILL", killed_by_signal="SIGKILL"), False),
        (trial(TrialState.FAIL, returncode=137, lost="killed by SIGKILL", killed_by_signal="SIGKILL",
               attempt=MAX_ATTEMPTS), True),  # killed on its last attempt: a failure
        (trial(TrialState.FAIL, returncode=-11, error="crashed with SIGSEGV (exit code -11)"), True),
    ]
    study = optuna.create_study()
    study.add_trials([t for t, _ in cases])
    got = [Sweep.counts_toward_n_trials(t) for t in study.get_trials()]
    assert got == [expected for _, expected in cases]
    assert [is_lost(t) for t in study.get_trials()] == [False, False, False, True, True, True, False, True, True, False]
    # sweep.max_retries: 0 -> one attempt; a killed trial then counts at once
    assert Sweep.counts_toward_n_trials(study.get_trials()[7], max_attempts=1)
    assert not Sweep.counts_toward_n_trials(study.get_trials()[8], max_attempts=MAX_ATTEMPTS + 1)


def test_max_retries_defaults_to_two(tmp_path):
    assert load_sweep(write_sweep(tmp_path)).max_retries == 2 == MAX_ATTEMPTS - 1
    assert Sweep(load_sweep(write_sweep(tmp_path, sweep={"max_retries": 0}))).max_attempts == 1


#: The end of torchrun's stderr when rank 1 was SIGKILLed and rank 0 stopped by its SIGTERM.
TORCHRUN_SUMMARY = """bootstrap_repro FAILED
------------------------------------------------------------
Failures:
[0]:
  rank      : 0 (local_rank: 0)
  traceback : Signal 15 (SIGTERM) received by PID 4241
------------------------------------------------------------
Root Cause (first observed failure):
[1]:
  time      : 2026-01-01_00:00:00
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================""".splitlines()


@pytest.mark.parametrize("returncode, tail, expected", [
    (0, [], None),
    (1, ["error: run failed (RuntimeError: boom); see logs.txt"], None),  # the code raised
    (2, ["error: optimizer.lr: expected a number"], None),  # bad input
    (130, [], signal.SIGINT),  # an interrupted run's own exit code (the driver treats it as interrupted first)
    (-9, [], signal.SIGKILL),  # subprocess: killed by SIGKILL (OOM killer, kill -9)
    (-15, [], signal.SIGTERM),
    (137, [], signal.SIGKILL),  # Docker / a shell: 128 + 9
    (143, [], signal.SIGTERM),
    (-11, [], signal.SIGSEGV),  # a crash: the caller does not retry it (CRASH_SIGNALS)
    (139, [], signal.SIGSEGV),
    (1, TORCHRUN_SUMMARY, signal.SIGKILL),  # torchrun: a rank was SIGKILLed (the OOM killer's favourite)
    (1, TORCHRUN_SUMMARY[:6], None),  # only another rank's signal, no root cause in view: a failure
    (200, [], None),  # beyond 128 + 64: not a signal
    (None, [], None),  # never started
])
def test_how_a_trial_process_ended(returncode, tail, expected):
    assert ended_by_signal(returncode, tail) == expected


def test_view_of_a_sweep_dir_without_its_study(capsys, tmp_path):
    f = write_sweep(tmp_path)
    Sweep(load_sweep(f)).prepare()
    journal = tmp_path / "sweep" / "study.journal"
    journal.unlink()
    bad_input(capsys, tmp_path, ["view", str(tmp_path / "sweep")],
              f"{tmp_path / 'sweep'}: the study's storage {journal} is missing; the sweep dir has lost its study")


def test_sweep_file_yaml_errors_name_file_line_col(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep:\n  dir: x\n   n_trials: 2\n")
    assert main(["sweep", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad}:3:12: YAML syntax error: mapping values are not allowed in this context; fix the file\n"
    assert main(["sweep", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.yaml'}: sweep file not found; check the path\n"
