"""Sweeps on Slurm (``--runtime.name slurm --jobs K``): a job array of workers on a real (local) cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from slurm_cluster import slurm  # noqa: F401 - the fixture

sys.path.insert(0, str(REPO / "tests" / "sweep"))
from sweep_helpers import states, study_trials, sweep_cli, wait_for, write_sweep  # noqa: E402

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


def test_sweep_on_slurm_runs_exactly_n_trials_with_two_workers(slurm, tmp_path):
    f = write_sweep(tmp_path, sweep={"n_trials": 4, "jobs": 2})
    t0 = time.monotonic()
    r = sweep_cli(f, *SLURM, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    array = _array_id(r.stdout)
    trials = study_trials(tmp_path / "sweep")
    assert _finished(trials) == 4 and len(trials) == 4, states(trials)
    assert (tmp_path / "sweep" / "view.html").is_file()
    assert "progress: 4/4 done" in r.stdout and "report:" in r.stdout
    marker = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert marker["slurm"]["array_job_id"] == array and len(marker["slurm"]["tasks"]) == 2
    # each trial ran inside an array task of this array, and its record says so
    nodes = set()
    for t in trials:
        rec = json.loads((tmp_path / "sweep" / t.user_attrs["dir"] / "repro" / "record.json").read_text())
        assert rec["scheduler"]["job_id"] == array, rec["scheduler"]
        nodes.add(rec["scheduler"]["node_list"])
        assert t.user_attrs["driver"]["slurm_job"]
    assert nodes <= {"n1", "n2"}
    assert not _squeue(array)
    print(f"4 trials, 2 workers: {time.monotonic() - t0:.1f} s; nodes {sorted(nodes)}")
    # run again: the study is full, nothing submitted, the same summary
    again = sweep_cli(f, *SLURM, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no worker submitted" in again.stdout and "as job array" not in again.stdout
    assert len(study_trials(tmp_path / "sweep")) == 4


def test_detach_then_reattach_and_scancel_of_a_worker_mid_trial_is_retried(slurm, tmp_path):
    # slower trials (more epochs, bigger data), so that one is mid-run when its worker is cancelled
    f = write_sweep(tmp_path, sweep={"n_trials": 4, "jobs": 2},
                    options={"engine": {"nb_epochs": 6}, "dataset": {"nb_items": 2000}})
    r = sweep_cli(f, *SLURM, "--detach", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    array = _array_id(r.stdout)
    assert "detached; re-attach with: bootstrap-repro sweep" in r.stdout and f"scancel {array}" in r.stdout
    marker = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    victim = marker["slurm"]["tasks"][1]

    wait_for(lambda: any(t.state.name == "RUNNING" for t in study_trials(tmp_path / "sweep")), 90, "a running trial", 1)
    subprocess.run(["scancel", victim], check=True)
    # re-attach: no new worker, the survivor retries the cancelled worker's trial
    r2 = sweep_cli(f, *SLURM, timeout=300)
    out = r2.stdout + r2.stderr
    assert f"re-attaching to job array {array}" in out and "as job array" not in out, out
    trials = study_trials(tmp_path / "sweep")
    assert _finished(trials) == 4, (states(trials), out)
    lost = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get("lost")]
    retried = {t.user_attrs.get("retry_of") for t in trials}
    assert all(t.number in retried for t in lost), [(t.number, t.user_attrs) for t in trials]
    print(f"lost and retried: {[t.number for t in lost]}; states {states(trials)}; rc {r2.returncode}")
    assert r2.returncode == 0 or not lost, out
    assert (tmp_path / "sweep" / "view.html").is_file()
    assert not _squeue(array)


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
