"""Sweeps on Slurm (``--runtime.name slurm --jobs K``): a job array of workers on a real (local) cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from slurm_cluster import slurm  # noqa: F401 - the fixture

sys.path.insert(0, str(REPO / "tests" / "sweep"))
from postgres import database_url  # noqa: E402
from sweep_helpers import BAD_LR, states, study_trials, sweep_cli, wait_for, write_sweep  # noqa: E402

pytestmark = pytest.mark.slow

SLURM = ["--runtime.name", "slurm", "--runtime.slurm.time", "5"]


def _array_id(out: str) -> str:
    m = re.search(r"as job array (\d+)", out)
    assert m, out
    return m.group(1)


def _squeue(array: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-j", array, "-o", "%i %T"], capture_output=True, text=True, check=False)
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


def _finished(trials) -> int:
    return sum(1 for t in trials if t.state.name in ("COMPLETE", "PRUNED"))


def _records(sweep_dir: Path, trials) -> dict[int, dict]:
    return {t.number: json.loads((sweep_dir / t.user_attrs["dir"] / "repro" / "record.json").read_text())
            for t in trials if (sweep_dir / t.user_attrs.get("dir", "-") / "repro" / "record.json").is_file()}


def _ran_in_the_array(array: str, trials, records: dict[int, dict]) -> None:
    """Each trial ran in an array task of ``array``: its record names the array and the task, its driver attr the
    task's own job id (``SLURM_JOB_ID``), one per task."""
    task_of: dict[str, str] = {}
    for t in trials:
        s = records[t.number]["scheduler"]
        assert s["kind"] == "slurm" and s["job_id"] == array and s["node_list"] in ("n1", "n2"), s
        assert s["array_task_id"] in ("0", "1"), s
        job = t.user_attrs["driver"]["slurm_job"]
        assert task_of.setdefault(job, s["array_task_id"]) == s["array_task_id"], (job, task_of, s)
    assert 1 <= len(task_of) <= 2, task_of


def _unique_id(task: str) -> str:
    """The own job id (``%A``, ``SLURM_JOB_ID``) of array task ``ARRAY_I``."""
    out = subprocess.run(["squeue", "-h", "-j", task, "-o", "%A"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


#: Trials 0-2 and 4 learn, 3 and 5 cannot (lr 1e-12).  The median pruner waits for 2 COMPLETE trials; with 2
#: workers trial 3 is claimed when at least 2 of trials 0-2 have ended, and trials 0-2 cannot be pruned before
#: 2 of them are COMPLETE: trials 3 and 5 are always pruned at their first epoch, inside their worker's job.
PRUNE_LRS = [0.1, 0.2, 0.3, BAD_LR, 0.15, BAD_LR]


def test_six_trials_two_workers_exactly_six_end_and_bad_ones_are_pruned_inside_the_jobs(slurm, tmp_path):
    f = write_sweep(tmp_path, options={"engine": {"nb_epochs": 3}},
                    sweep={"n_trials": 6, "jobs": 2,
                           "pruner": {"name": "median", "n_warmup_steps": 0, "n_startup_trials": 2}},
                    params={"optimizer.lr": {"type": "categorical", "choices": sorted(set(PRUNE_LRS))}},
                    enqueue=[{"optimizer.lr": lr} for lr in PRUNE_LRS])
    t0 = time.monotonic()
    r = sweep_cli(f, *SLURM, timeout=300)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    array = _array_id(r.stdout)
    sweep_dir = tmp_path / "sweep"
    trials = study_trials(sweep_dir)
    assert _finished(trials) == 6 and len(trials) == 6, states(trials)
    by_number = {t.number: t for t in trials}
    assert by_number[3].state.name == "PRUNED" and by_number[5].state.name == "PRUNED", states(trials)
    assert by_number[0].state.name == "COMPLETE" and by_number[1].state.name == "COMPLETE"
    assert (sweep_dir / "view.html").is_file()
    assert re.search(r"progress: 6/6 done \(\d complete, [2-4] pruned, 0 failed\)", r.stdout), r.stdout
    assert re.search(r"w[01]: trial 0003 PRUNED", r.stdout) and "report:" in r.stdout, r.stdout
    marker = json.loads((sweep_dir / "sweep.json").read_text())
    assert marker["slurm"]["array_job_id"] == array and len(marker["slurm"]["tasks"]) == 2
    records = _records(sweep_dir, trials)
    assert sorted(records) == list(range(6))
    _ran_in_the_array(array, trials, records)  # pruned ones included
    for n in (3, 5):  # pruned from inside the job: the trial's own run stopped after its first epoch
        d = sweep_dir / by_number[n].user_attrs["dir"]
        assert json.loads((d / "sweep_trial.json").read_text())["state"] == "PRUNED"
        assert json.loads((d / "logs.json").read_text())["eval_epoch.epoch"] == [0]
        assert list(by_number[n].intermediate_values) == [0]
        assert records[n]["status"] in ("STOPPED", "COMPLETED"), records[n]["status"]
    nodes = {rec["scheduler"]["node_list"] for rec in records.values()}
    assert not _squeue(array)
    print(f"6 trials, 2 workers: {took:.1f} s; {states(trials)}; nodes {sorted(nodes)}")
    # run again: the study is full, nothing submitted, the same summary
    again = sweep_cli(f, *SLURM, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no worker submitted" in again.stdout and "as job array" not in again.stdout
    assert len(study_trials(sweep_dir)) == 6


def test_detach_then_reattach_and_scancel_of_a_worker_mid_trial_is_retried(slurm, tmp_path):
    # slower trials (more epochs, bigger data), so that one is mid-run when its worker is cancelled
    f = write_sweep(tmp_path, sweep={"n_trials": 6, "jobs": 2},
                    options={"engine": {"nb_epochs": 6}, "dataset": {"nb_items": 2000}})
    t0 = time.monotonic()
    r = sweep_cli(f, *SLURM, "--detach", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    array = _array_id(r.stdout)
    assert "detached; re-attach with: bootstrap-repro sweep" in r.stdout and f"scancel {array}" in r.stdout
    marker = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    victim = marker["slurm"]["tasks"][1]
    wait_for(lambda: _unique_id(victim), 60, f"worker {victim} running", 0.5)
    job = _unique_id(victim)
    wait_for(lambda: any(t.state.name == "RUNNING" and t.user_attrs.get("driver", {}).get("slurm_job") == job
                         for t in study_trials(tmp_path / "sweep")), 120, f"a running trial of worker {victim}", 1)
    subprocess.run(["scancel", victim], check=True)
    # re-attach: no new worker, the survivor retries the cancelled worker's trial
    r2 = sweep_cli(f, *SLURM, timeout=400)
    out = r2.stdout + r2.stderr
    assert f"re-attaching to job array {array}" in out and "as job array" not in out, out
    trials = study_trials(tmp_path / "sweep")
    assert _finished(trials) == 6, (states(trials), out)
    lost = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get("lost")]
    assert lost, [(t.number, t.state.name, t.user_attrs) for t in trials]  # the cancelled worker's trial
    retried = {t.user_attrs.get("retry_of") for t in trials}
    assert all(t.number in retried for t in lost), [(t.number, t.user_attrs) for t in trials]
    assert len(trials) == 6 + len(lost), states(trials)
    print(f"lost and retried: {[(t.number, t.user_attrs['lost']) for t in lost]}; states {states(trials)}; "
          f"{time.monotonic() - t0:.1f} s")
    assert r2.returncode == 0, out
    assert "progress: 6/6 done" in out
    assert (tmp_path / "sweep" / "view.html").is_file()
    assert not _squeue(array)


# --------------------------------------------------------------------------- PostgreSQL storage
@pytest.fixture
def postgres_url():
    yield from database_url()


def test_postgres_storage_with_slurm_workers_exactly_n_trials_no_duplicates(slurm, tmp_path, postgres_url):
    n = 6
    f = write_sweep(tmp_path, sweep={"n_trials": n, "jobs": 2})
    t0 = time.monotonic()
    r = sweep_cli(f, *SLURM, "--storage", postgres_url, timeout=300)  # a password on the command line
    assert r.returncode == 0, r.stdout + r.stderr
    array = _array_id(r.stdout)
    sweep_dir = tmp_path / "sweep"
    trials = study_trials(sweep_dir, postgres_url)
    assert states(trials) == {"COMPLETE": n}, states(trials)  # not one more: every count is under one advisory lock
    assert sorted(t.number for t in trials) == list(range(n))
    dirs = [t.user_attrs["dir"] for t in trials]
    assert len(set(dirs)) == n and sorted(d.name for d in (sweep_dir / "trials").iterdir()) == \
        [f"{i:04d}" for i in range(n)]
    marker = json.loads((sweep_dir / "sweep.json").read_text())
    assert marker["storage_url"].startswith("postgresql://") and "@" in marker["storage_url"]
    _ran_in_the_array(array, trials, _records(sweep_dir, trials))
    workers = {t.user_attrs["driver"]["slurm_job"] for t in trials}
    password = postgres_url.split(":")[2].split("@")[0]
    for path in sweep_dir.rglob("*"):  # the password is only in the workers' 0600 copy, not in submitit's pickles
        if path.is_file() and password.encode() in path.read_bytes():
            assert path.name == "storage.url" and path.stat().st_mode & 0o077 == 0, path
    assert (sweep_dir / "slurm" / "storage.url").is_file()
    assert "progress: 6/6 done" in r.stdout and (sweep_dir / "view.html").is_file()
    assert not _squeue(array)
    print(f"PostgreSQL, {n} trials, 2 workers ({sorted(workers)}): {time.monotonic() - t0:.1f} s")


def test_postgres_heartbeat_fails_the_trial_of_a_frozen_worker_and_it_is_retried(slurm, tmp_path, postgres_url):
    """A worker that stops answering (SIGSTOP to its job: a hung node) keeps its pid and its place in squeue (state
    STOPPED), so only the missing heartbeats tell: after GRACE_PERIOD_S Optuna fails its trial (no ``lost`` attr,
    no ``returncode``), the other worker retries it; then ``scancel`` of the frozen worker drops its late result."""
    from bootstrap_repro.sweep._storage import GRACE_PERIOD_S

    n = 4
    f = write_sweep(tmp_path, sweep={"n_trials": n, "jobs": 2, "storage": postgres_url},
                    options={"engine": {"nb_epochs": 6}, "dataset": {"nb_items": 2000}})
    sweep_dir = tmp_path / "sweep"
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (tmp_path / "driver.out").open("w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "sweep", str(f), *SLURM], cwd=REPO,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "slurm" in _marker(sweep_dir), 120, "the array in sweep.json", 0.5)
        victim = _marker(sweep_dir)["slurm"]["tasks"][1]
        wait_for(lambda: _unique_id(victim), 60, f"worker {victim} running", 0.5)
        job = _unique_id(victim)

        def frozen_trial():
            return next((t for t in study_trials(sweep_dir, postgres_url) if t.state.name == "RUNNING"
                         and t.user_attrs.get("driver", {}).get("slurm_job") == job), None)

        wait_for(lambda: frozen_trial() is not None, 150, f"a running trial of worker {victim}", 1)
        subprocess.run(["scancel", "--signal=STOP", victim], check=True)  # the worker and its trial's run
        stopped_at = time.monotonic()
        number = frozen_trial().number
        assert [ln.split()[1] for ln in _squeue(victim)] == ["STOPPED"], _squeue(victim)  # in squeue: not dead

        def failed():
            return next(t for t in study_trials(sweep_dir, postgres_url) if t.number == number).state.name == "FAIL"

        wait_for(failed, GRACE_PERIOD_S + 90, f"trial {number} failed by its missing heartbeat", 2)
        stale_after = time.monotonic() - stopped_at
        wait_for(lambda: _finished(study_trials(sweep_dir, postgres_url)) == n, 240, f"{n} finished trials", 2)
        subprocess.run(["scancel", victim], check=True)  # SIGCONT + SIGTERM: it wakes and is cancelled
        rc = driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    log = (tmp_path / "driver.out").read_text()
    trials = study_trials(sweep_dir, postgres_url)
    by_number = {t.number: t for t in trials}
    victim_trial = by_number[number]
    # failed by Optuna's heartbeat check: neither its worker (returncode) nor the dead-driver check (lost) told it
    assert victim_trial.state.name == "FAIL" and "returncode" not in victim_trial.user_attrs, victim_trial.user_attrs
    assert "lost" not in victim_trial.user_attrs, victim_trial.user_attrs
    retries = [t for t in trials if t.user_attrs.get("retry_of") == number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE", [(t.number, t.user_attrs) for t in trials]
    assert retries[0].user_attrs["driver"]["slurm_job"] != victim_trial.user_attrs["driver"]["slurm_job"]
    assert states(trials) == {"COMPLETE": n, "FAIL": 1}, states(trials)
    assert GRACE_PERIOD_S - 5 <= stale_after <= GRACE_PERIOD_S + 90, stale_after
    assert f"trial {number:04d} lost (no heartbeat), retried as trial {retries[0].number:04d}" in log, log
    assert rc == 0 and f"progress: {n}/{n} done" in log, log
    assert not _squeue(victim.split("_")[0])
    print(f"frozen worker {victim}: trial {number} failed by heartbeat {stale_after:.0f} s after SIGSTOP, retried as "
          f"{retries[0].number}; {time.monotonic() - t0:.1f} s")


def _marker(sweep_dir: Path) -> dict:
    try:
        return json.loads((sweep_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}


def test_journal_on_a_local_disk_with_several_hosts_is_refused(monkeypatch, tmp_path):
    from bootstrap_repro.runtimes._slurm import SlurmError
    from bootstrap_repro.sweep import _slurm, load_sweep

    f = write_sweep(tmp_path, sweep={"n_trials": 2, "jobs": 2})
    spec = load_sweep(f, SLURM)
    monkeypatch.setattr(_slurm, "fs_type", lambda p: "ext4")
    monkeypatch.setattr(_slurm, "partition_hosts", lambda p: ["hostA", "hostB"])
    with pytest.raises(SlurmError, match=r"is on a local filesystem \(ext4\) but partition debug has nodes on 2 "
                                          r"hosts \(hostA, hostB\).*use PostgreSQL"):
        _slurm.check_shared_journal(spec, {"partition": "debug"})
    monkeypatch.setattr(_slurm, "partition_hosts", lambda p: ["hostA"])  # n1/n2 on one host: shared
    _slurm.check_shared_journal(spec, {"partition": "debug"})
    monkeypatch.setattr(_slurm, "partition_hosts", lambda p: ["hostA", "hostB"])
    monkeypatch.setattr(_slurm, "fs_type", lambda p: "nfs4")
    _slurm.check_shared_journal(spec, {"partition": "debug"})


def test_detach_without_slurm_is_an_error(tmp_path):
    f = write_sweep(tmp_path)
    r = sweep_cli(f, "--detach")
    assert r.returncode == 2 and "--detach: only with --runtime.name slurm" in r.stderr
