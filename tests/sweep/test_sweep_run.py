"""End to end: sweeps of real trial processes on the tiny synthetic experiment."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap_repro.cli import main
from bootstrap_repro.sweep import Sweep, load_sweep
from bootstrap_repro.views import read_log

from conftest import REPO
from sweep_helpers import (
    BAD_LR,
    GOOD_LR,
    processes_mentioning,
    states,
    study_trials,
    sweep_cli,
    wait_for,
    write_sweep,
)

try:
    from tests.chromium import drawn_subplots, error_banner, render_dom, require_chromium
except ImportError:  # tests/ itself on sys.path
    from chromium import drawn_subplots, error_banner, render_dom, require_chromium

pytestmark = pytest.mark.slow

LR_HIDDEN = {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
             "model.network.hidden": {"type": "int", "low": 4, "high": 32}}


def trial_dirs(sweep_dir: Path) -> list[str]:
    return sorted(p.name for p in (sweep_dir / "trials").iterdir())


# --------------------------------------------------------------------------- 6 trials, 2 workers
@pytest.fixture(scope="module")
def six(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    f = write_sweep(root, sweep={"n_trials": 6, "jobs": 2, "sampler": {"name": "tpe", "seed": 0}}, params=LR_HIDDEN)
    r = sweep_cli(f)
    return root, f, r


def test_six_trials_with_two_jobs_complete_with_a_report(six):
    root, _, r = six
    assert r.returncode == 0, r.stdout + r.stderr
    sweep_dir = root / "sweep"
    trials = study_trials(sweep_dir)
    assert states(trials) == {"COMPLETE": 6}
    assert trial_dirs(sweep_dir) == [f"{n:04d}" for n in range(6)]
    for t in trials:
        d = sweep_dir / "trials" / f"{t.number:04d}"
        record = json.loads((d / "sweep_trial.json").read_text())
        assert (record["study"], record["number"], record["state"]) == ("sweep", t.number, "COMPLETE")
        assert record["params"] == t.params
        losses = read_log(d / "logs.json")["eval_epoch.loss"]
        assert [t.intermediate_values[e] for e in sorted(t.intermediate_values)] == losses  # reported every epoch
        assert t.value == min(losses)  # the best epoch's value
        assert (d / "view.html").is_file()
    # asynchronous workers: the second trial started before the first one ended
    by_number = {t.number: t for t in trials}
    assert by_number[1].datetime_start < by_number[0].datetime_complete
    assert "6 complete, 0 pruned, 0 failed (n_trials 6)" in r.stdout
    page = (sweep_dir / "view.html").read_text()
    for n in range(6):
        assert f'href="trials/{n:04d}/view.html"' in page


def test_rerunning_a_finished_sweep_starts_nothing(six):
    root, f, _ = six
    before = trial_dirs(root / "sweep")
    r = sweep_cli(f)
    assert r.returncode == 0, r.stderr
    assert trial_dirs(root / "sweep") == before
    assert states(study_trials(root / "sweep")) == {"COMPLETE": 6}


def test_view_rebuilds_the_sweep_report(six, capsys):
    root, _, _ = six
    report = root / "sweep" / "view.html"
    report.unlink()
    assert main(["view", str(root / "sweep")]) == 0
    assert capsys.readouterr().out.strip() == str(report)
    assert report.read_text().count("<tr class=") == 6


@pytest.mark.chromium
def test_report_renders_in_chromium(six):
    require_chromium()
    root, _, _ = six
    dom = render_dom(root / "sweep" / "view.html")
    assert error_banner(dom) == ""
    assert drawn_subplots(dom) == (4, 4)
    assert dom.count('<tr class="COMPLETE') == 6


# --------------------------------------------------------------------------- pruning and the cache
def test_pruner_stops_bad_trials_and_cached_trials_are_told(tmp_path):
    """Trials 0, 1, 3 learn (1 and 3 repeat 0's options: result cache), trials 2 and 4 cannot (lr 0) and are pruned.

    The package runs from a copy outside the git checkout: the cache key holds the code's state, which
    other work in the checkout could change between two trials.
    """
    good, bad = {"optimizer.lr": GOOD_LR}, {"optimizer.lr": BAD_LR}
    f = write_sweep(tmp_path, options={"engine": {"nb_epochs": 3}},
                    sweep={"n_trials": 5, "pruner": {"name": "median", "n_warmup_steps": 0, "n_startup_trials": 2}},
                    params={"optimizer.lr": {"type": "categorical", "choices": [GOOD_LR, BAD_LR]}},
                    enqueue=[good, good, bad, good, bad])
    shutil.copytree(REPO / "bootstrap_repro", tmp_path / "pkg" / "bootstrap_repro",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "sweep", str(f)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    sweep_dir = tmp_path / "sweep"
    trials = {t.number: t for t in study_trials(sweep_dir)}
    assert {n: t.state.name for n, t in trials.items()} == {
        0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "COMPLETE", 4: "PRUNED"}
    for n in (2, 4):  # stopped after their first epoch, logs and view intact
        d = sweep_dir / "trials" / f"{n:04d}"
        logs = read_log(d / "logs.json")
        assert logs["eval_epoch.epoch"] == [0] and len(logs["train_epoch.loss"]) == 1
        assert json.loads((d / "sweep_trial.json").read_text())["state"] == "PRUNED"
        assert (d / "view.html").is_file() and (d / "ckpt_last_model.pth.tar").is_file()
        assert list(trials[n].intermediate_values) == [0]
    for n in (1, 3):  # materialised from the cache: the recorded values are told to the study
        record = json.loads((sweep_dir / "trials" / f"{n:04d}" / "repro" / "record.json").read_text())
        assert record["cache_hit_of"]["exp_dir"] == str(sweep_dir / "trials" / "0000")
        assert trials[n].value == trials[0].value
        assert trials[n].intermediate_values == trials[0].intermediate_values
    assert "3 complete, 2 pruned, 0 failed (n_trials 5)" in r.stdout


# --------------------------------------------------------------------------- failures
def test_a_crashing_trial_does_not_take_the_driver_down(tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 1},
                    params={"model.network.hidden": {"type": "categorical", "choices": [-1, 16]}},
                    enqueue=[{"model.network.hidden": -1}])
    r = sweep_cli(f)
    assert r.returncode == 1, r.stdout + r.stderr  # the sweep ran to its end; no trial completed
    [t] = study_trials(tmp_path / "sweep")
    # the trial's run refuses hidden -1 (the mlp refuses it: bad input, exit 2): a failure of its own, not retried
    assert t.state.name == "FAIL" and t.user_attrs["returncode"] == 2 and "lost" not in t.user_attrs
    record = json.loads((tmp_path / "sweep" / "trials" / "0000" / "sweep_trial.json").read_text())
    assert record["state"] == "FAIL" and "model.network" in record["error"]
    assert "0 complete, 0 pruned, 1 failed (n_trials 1)" in r.stdout
    assert (tmp_path / "sweep" / "view.html").is_file()


def test_objective_never_logged_stops_the_study(tmp_path):
    f = write_sweep(tmp_path, sweep={"objective": "eval_epoch.acc", "n_trials": 3}, options={"engine": {"nb_epochs": 5}})
    r = sweep_cli(f)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ("error: sweep.objective: eval_epoch.acc is not logged by trial 0 (it logged: "
                                "eval_epoch.acctop1, eval_epoch.acctop2, eval_epoch.loss); set sweep.objective "
                                "to one of those")
    [t] = study_trials(tmp_path / "sweep")
    assert t.state.name == "FAIL" and t.user_attrs["lost"] == "objective not logged"
    assert read_log(tmp_path / "sweep" / "trials" / "0000" / "logs.json")["eval_epoch.epoch"] == [0]
    # nothing finished: the objective may be fixed and the study resumed; the stopped trial is retried
    f = write_sweep(tmp_path, sweep={"objective": "eval_epoch.loss", "n_trials": 1})
    r = sweep_cli(f)
    assert r.returncode == 0, r.stdout + r.stderr
    trials = study_trials(tmp_path / "sweep")
    assert [(x.number, x.state.name) for x in trials] == [(0, "FAIL"), (1, "COMPLETE")]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == t.params


# --------------------------------------------------------------------------- kill -9 and resume
def test_kill_9_of_the_driver_then_rerun_finishes_exactly_n_trials(tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 4, "jobs": 2})
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    endless = ["--engine.nb_epochs", "1000000"]  # only the driver's death can end these trials
    driver = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "sweep", str(f), *endless], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = [sweep_dir / "trials" / f"{n:04d}" / "sweep_trial.json" for n in (0, 1)]
    try:
        wait_for(lambda: all(p.is_file() for p in started), 120, "two trials to start training")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    wait_for(lambda: not processes_mentioning(str(sweep_dir / "trials")), 30, "the orphaned trials to exit")
    assert states(study_trials(sweep_dir)) == {"RUNNING": 2}  # the dead driver's trials

    r = sweep_cli(f)  # overrides are not part of the search space: back to the file's 2 epochs
    assert r.returncode == 0, r.stdout + r.stderr
    trials = study_trials(sweep_dir)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") or
                (t.state.name == "FAIL" and not t.user_attrs.get("lost") and "returncode" in t.user_attrs)]
    assert len(finished) == 4 and all(t.state.name == "COMPLETE" for t in finished)
    lost = [t for t in trials if t.state.name == "FAIL"]
    assert sorted(t.number for t in lost) == [0, 1]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert sorted(retries) == [0, 1]
    for t in lost:
        assert retries[t.number].params == t.params and retries[t.number].state.name == "COMPLETE"
        record = json.loads((sweep_dir / "trials" / f"{t.number:04d}" / "sweep_trial.json").read_text())
        assert (record["state"], record["lost"]) == ("FAIL", "its driver died")
    # one dir per trial, named by its number: nothing overwritten, nothing duplicated
    assert trial_dirs(sweep_dir) == [f"{t.number:04d}" for t in sorted(trials, key=lambda t: t.number)]
    for t in trials:
        record = json.loads((sweep_dir / "trials" / f"{t.number:04d}" / "sweep_trial.json").read_text())
        assert record["number"] == t.number
    assert "2 lost and retried" in r.stdout


# --------------------------------------------------------------------------- killed trials
#: A hook plugin loaded into every trial (``$BOOTSTRAP_REPRO_HOOKS``): at the end of epoch 1, once its checkpoint
#: is on disk, it SIGKILLs its own process, raises, or hangs until the run is interrupted. ``-once`` modes act in
#: the first trial that gets there only (a marker file), as an OOM kill or a preemption would.
TRIAL_HOOK = '''
import os, signal, time
from pathlib import Path


def register(engine):
    marker, mode = Path(os.environ["SWEEP_TEST_MARKER"]), os.environ["SWEEP_TEST_MODE"]

    def at_epoch_end(engine):
        if engine.state.epoch < 2:  # epochs 0 and 1 done (the next one to run is 2)
            return
        if mode.endswith("-once"):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        engine.checkpointer.wait()  # ckpt_last of epoch 1 is committed
        if mode.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if mode.startswith("raise"):
            raise RuntimeError("boom from the test hook")
        while True:  # hang until the run is interrupted (the driver's SIGTERM)
            time.sleep(0.05)
            engine.check_stop()

    engine.register_hook("engine_on_end_epoch", at_epoch_end)
'''


def hook_env(tmp_path: Path, mode: str) -> dict[str, str]:
    (tmp_path / "hookmod").mkdir(exist_ok=True)
    (tmp_path / "hookmod" / "sweep_test_hook.py").write_text(TRIAL_HOOK)
    path = os.pathsep.join(filter(None, [str(REPO), str(tmp_path / "hookmod"), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "BOOTSTRAP_REPRO_HOOKS": "sweep_test_hook",
            "SWEEP_TEST_MODE": mode, "SWEEP_TEST_MARKER": str(tmp_path / "hook.marker")}


def test_a_sigkilled_trial_is_retried_from_its_checkpoint_and_does_not_use_the_budget(tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 2}, options={"engine": {"nb_epochs": 3}})
    r = sweep_cli(f, env=hook_env(tmp_path, "kill-once"))
    assert r.returncode == 0, r.stdout + r.stderr
    sweep_dir = tmp_path / "sweep"
    t0, t1, t2 = study_trials(sweep_dir)
    # the killed trial: failed, marked, and not counted
    assert t0.state.name == "FAIL" and t0.user_attrs["killed_by_signal"] == "SIGKILL"
    assert t0.user_attrs["returncode"] == -signal.SIGKILL and t0.user_attrs["lost"] == "killed by SIGKILL"
    assert sorted(t0.intermediate_values) == [0, 1]
    # its retry: same params, resumed in the killed trial's dir from its last checkpoint (epoch 2 only trained)
    assert t1.state.name == "COMPLETE" and t1.params == t0.params
    assert (t1.user_attrs["retry_of"], t1.user_attrs["attempt"]) == (0, 2)
    assert t1.user_attrs["dir"] == "trials/0000" and t1.user_attrs["resumed_from"] == "last"
    d = sweep_dir / "trials" / "0000"
    losses = read_log(d / "logs.json")["eval_epoch.loss"]
    assert read_log(d / "logs.json")["eval_epoch.epoch"] == [0, 1, 2]
    assert [t1.intermediate_values[e] for e in sorted(t1.intermediate_values)] == losses
    assert t1.value == min(losses)
    record = json.loads((d / "repro" / "record.json").read_text())
    assert len(record["resumes"]) == 1 and record["resumes"][0]["resumed_from"] == "last"
    trial_file = json.loads((d / "sweep_trial.json").read_text())
    assert (trial_file["number"], trial_file["state"], trial_file["retry_of"]) == (1, "COMPLETE", 0)
    assert "killed_by_signal" not in trial_file and "stderr_tail" not in trial_file
    [previous] = trial_file["previous_attempts"]
    assert (previous["number"], previous["state"], previous["killed_by_signal"]) == (0, "FAIL", "SIGKILL")
    # the user's budget: exactly n_trials finished (the retry and one new trial)
    assert t2.state.name == "COMPLETE" and "retry_of" not in t2.user_attrs
    assert trial_dirs(sweep_dir) == ["0000", "0002"]  # the retry has no dir of its own
    assert "trial 0000 killed by SIGKILL, retried as trial 0001 (attempt 2 of 3, resuming trials/0000" in r.stdout
    assert "2 complete, 0 pruned, 0 failed, 1 killed and retried (n_trials 2)" in r.stdout
    page = (sweep_dir / "view.html").read_text()
    assert "killed by SIGKILL; retried as trial 1" in page
    assert "retry of trial 0 (killed by SIGKILL), resumed from its last checkpoint" in page
    assert page.count('href="trials/0000/view.html"') == 2


def test_a_trial_killed_on_every_attempt_fails_after_max_retries(tmp_path, monkeypatch):
    """Each trial runs under a shell wrapper, which reports its SIGKILLed child as exit 137 (as Docker does).

    As under torchrun or in a container, the run's parent is then a launcher, not the driver (the trial does not
    arm ``PR_SET_PDEATHSIG`` on the driver: ``TORCHELASTIC_RUN_ID`` tells it so).
    """
    f = write_sweep(tmp_path, sweep={"n_trials": 1, "max_retries": 1}, options={"engine": {"nb_epochs": 3}})
    for k, v in hook_env(tmp_path, "kill-always").items():
        monkeypatch.setenv(k, v)
    wrapper = tmp_path / "python-in-a-shell"
    wrapper.write_text(f'#!/bin/sh\nTORCHELASTIC_RUN_ID=sweep-test "{sys.executable}" "$@"\nexit $?\n')
    wrapper.chmod(0o755)
    out = io.StringIO()
    result = Sweep(load_sweep(f), stream=out, python=str(wrapper)).run(handle_signals=False)
    assert result.exit_code == 1, out.getvalue()  # no trial completed
    trials = study_trials(tmp_path / "sweep")
    assert [(t.number, t.state.name, t.user_attrs.get("killed_by_signal"), t.user_attrs["returncode"])
            for t in trials] == [(0, "FAIL", "SIGKILL", 137), (1, "FAIL", "SIGKILL", 137)]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].user_attrs["dir"] == "trials/0000"
    assert result.counts["FAIL"] == 1 and result.counts["killed"] == 1
    assert "0 complete, 0 pruned, 1 failed, 1 killed and retried (n_trials 1)" in out.getvalue()
    assert "not retried: attempt 2 of 2" in out.getvalue()
    page = (tmp_path / "sweep" / "view.html").read_text()
    assert "killed by SIGKILL; not retried (attempt 2 of 2)" in page


def test_a_trial_whose_code_raises_is_not_retried(tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 2}, options={"engine": {"nb_epochs": 3}})
    r = sweep_cli(f, env=hook_env(tmp_path, "raise-once"))
    assert r.returncode == 0, r.stdout + r.stderr
    t0, t1 = study_trials(tmp_path / "sweep")
    assert t0.state.name == "FAIL" and t0.user_attrs["returncode"] == 1
    assert "boom from the test hook" in t0.user_attrs["error"]
    assert "lost" not in t0.user_attrs and "killed_by_signal" not in t0.user_attrs
    assert t1.state.name == "COMPLETE" and "retry_of" not in t1.user_attrs
    assert "1 complete, 0 pruned, 1 failed (n_trials 2)" in r.stdout


def test_interrupting_the_driver_then_rerunning_resumes_the_interrupted_trial(tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 1}, options={"engine": {"nb_epochs": 3}})
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, **hook_env(tmp_path, "hang-once")}
    driver = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "sweep", str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "hook.marker").exists(), 120, "the trial to hang after epoch 1")
    finally:
        driver.send_signal(signal.SIGINT)  # the user's Ctrl-C
        out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, out + err
    [t] = study_trials(sweep_dir)
    assert t.state.name == "FAIL" and t.user_attrs["lost"] == "interrupted" and t.user_attrs["returncode"] == 130
    assert "killed_by_signal" not in t.user_attrs  # the user's interrupt is not a kill: retried on the next run
    assert "1 lost (retried when the sweep runs again)" in out

    r = sweep_cli(f, env=hook_env(tmp_path, "hang-once"))  # the marker is there: no hang this time
    assert r.returncode == 0, r.stdout + r.stderr
    t0, t1 = study_trials(sweep_dir)
    assert t1.state.name == "COMPLETE" and t1.user_attrs["retry_of"] == 0 and t1.params == t0.params
    assert t1.user_attrs["dir"] == "trials/0000" and t1.user_attrs["resumed_from"] == "last"
    assert read_log(sweep_dir / "trials" / "0000" / "logs.json")["eval_epoch.epoch"] == [0, 1, 2]
    assert "trial 0000 interrupted, retried as trial 0001" in r.stdout
    assert "1 complete, 0 pruned, 0 failed, 1 lost and retried (n_trials 1)" in r.stdout
