"""``runtime.name: slurm`` against a real (local) Slurm cluster: results, requeue, scancel, errors."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, cli, write_options
from slurm_cluster import slurm  # noqa: F401 - the fixture

from bootstrap_repro.options import merge

pytestmark = pytest.mark.slow

SLOW_HOOK = """
import time

def register(engine):  # slows training down (numerics unchanged) so that a signal lands mid-run
    engine.register_hook('train_on_end_batch', lambda e: time.sleep(0.25))
"""


def tiny(tmp_path: Path, name: str, epochs: int = 2, **slurm_opts) -> Path:
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / name)}, "engine": {"nb_epochs": epochs},
                        "runtime": {"name": "slurm", "slurm": {"time": 5, **slurm_opts}}})
    return write_options(tmp_path / f"{name}.yaml", tree)


def local_reference(tmp_path: Path, epochs: int = 2) -> Path:
    opts = tiny(tmp_path, "local", epochs)
    r = cli("run", "-o", str(opts), "--runtime.name", "local", "--no-cache")
    assert r.returncode == 0, r.stderr
    return tmp_path / "local"


def assert_same(exp: Path, ref: Path) -> None:
    assert json.loads((exp / "logs.json").read_text()) == json.loads((ref / "logs.json").read_text())
    a = torch.load(exp / "ckpt_last_model.pth.tar", weights_only=False)
    b = torch.load(ref / "ckpt_last_model.pth.tar", weights_only=False)
    flat = lambda d: {k: v for k, v in (d.get("state_dict", d) if isinstance(d, dict) else d).items()}
    a, b = flat(a), flat(b)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))


def job_id(stderr: str) -> str:
    m = re.search(r"slurm: submitted job (\d+)", stderr)
    assert m, stderr
    return m.group(1)


def test_tiny_run_on_slurm_equals_a_local_run(slurm, tmp_path):
    ref = local_reference(tmp_path)
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), "--no-cache")
    assert r.returncode == 0, r.stderr
    jid = job_id(r.stderr)
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in r.stderr
    assert "train epoch 1 (2/2)" in r.stdout  # the job's log, streamed
    assert_same(tmp_path / "exp", ref)
    rec = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())
    s = rec["scheduler"]
    assert s["job_id"] == jid and s["cluster"] == "local" and s["partition"] == "debug"
    assert s["node_list"] in ("n1", "n2") and s["requeue_count"] == 0 and s["requested"]["time"] == 5
    assert s["submitted"] and s["started"] and s["ended"]
    assert (tmp_path / "exp.slurm" / jid / f"{jid}_0_log.out").is_file()  # submitit's folder, beside the exp dir


def _start_slow(tmp_path: Path, opts: Path, hook: str = SLOW_HOOK) -> tuple[subprocess.Popen, Path, Path]:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    (tmp_path / "plugins" / "slow_hook.py").write_text(hook)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path / 'plugins'}", "BOOTSTRAP_REPRO_HOOKS": "slow_hook"}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "run", "-o", str(opts), "--no-cache"],
                                cwd=REPO, env=env, stdout=o, stderr=e)
    return proc, out, err


def _wait_for(path: Path, proc: subprocess.Popen, err: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)


def test_warning_signal_requeues_and_the_resumed_run_equals_an_uninterrupted_one(slurm, tmp_path):
    ref = local_reference(tmp_path, epochs=4)
    proc, out, err = _start_slow(tmp_path, tiny(tmp_path, "exp", epochs=4))
    _wait_for(tmp_path / "exp" / "ckpt_last_model.pth.tar", proc, err)  # epoch 1 of 4 is saved
    jid = job_id(err.read_text())
    # what Slurm sends signal_delay_s before the time limit (and on preemption): USR2 to the job's steps
    # (the cluster's cred_expire=10 makes Slurm hold a requeued job ~11 s, not its default ~121 s)
    subprocess.run(["scancel", "--signal=USR2", jid], check=True, timeout=30)
    assert proc.wait(timeout=150) == 0, err.read_text()
    stderr = err.read_text()
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in stderr
    assert "warning signal; stopping the run" in stderr
    assert re.search(r"Resumed from checkpoint 'last' at epoch [1-3]", out.read_text())
    assert_same(tmp_path / "exp", ref)
    rec = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())
    assert rec["status"] == "COMPLETED" and rec["scheduler"]["requeue_count"] == 1
    assert rec["scheduler"]["job_id"] == jid


FIRST_ATTEMPT_SLOW_HOOK = """
import os, time

def register(engine):  # the job's first attempt only (a requeued job has SLURM_RESTART_COUNT >= 1): 1 s a batch
    if int(os.environ.get('SLURM_RESTART_COUNT') or 0) == 0:
        engine.register_hook('train_on_end_batch', lambda e: time.sleep(1.0))
"""


def test_the_real_time_limit_requeues_and_the_resumed_run_equals_an_uninterrupted_one(slurm, tmp_path):
    """No signal sent by hand: ``time 1`` (minute) and ``signal_delay_s 10`` make slurmctld send USR2 itself.

    slurmctld looks at time limits every 30 s (PERIODIC_TIMEOUT) and sends the warning at the first look at or
    after ``end - signal_delay_s - 30 s``: 20-51 s after the start here (measured: the same look fires for any
    delay from 10 to 50 s with a 1-minute limit).  The first attempt would need ~90 s (30 epochs of 3 batches,
    1 s a batch): it is hit.  The requeued attempt trains at full speed (~2 s) and ends before its own warning.
    """
    epochs = 30
    ref = local_reference(tmp_path, epochs=epochs)
    opts = tiny(tmp_path, "exp", epochs=epochs, time=1, signal_delay_s=10, max_requeues=3)
    t0 = time.monotonic()
    proc, out, err = _start_slow(tmp_path, opts, FIRST_ATTEMPT_SLOW_HOOK)
    assert proc.wait(timeout=240) == 0, err.read_text()
    took = time.monotonic() - t0
    stderr, stdout = err.read_text(), out.read_text()
    jid = job_id(stderr)
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in stderr
    assert "warning signal; stopping the run" in stderr, stderr
    m = re.search(r"Resumed from checkpoint 'last' at epoch (\d+)", stdout)
    assert m and 1 <= int(m.group(1)) < epochs, stdout
    assert_same(tmp_path / "exp", ref)
    rec = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())
    s = rec["scheduler"]
    assert rec["status"] == "COMPLETED" and s["job_id"] == jid and s["requeue_count"] >= 1, s
    assert s["time_limit"] == "00:01:00" and s["requested"]["time"] == 1
    # slurmctld sent it, in the window the time limit sets (not earlier than end - 10 s - 30 s, nor after the end)
    stamp = r"submitit \w+ \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - "
    log = stdout + stderr
    started = re.search(stamp + "Starting with JobEnvironment", log)
    caught = re.search(stamp + "Caught signal SIGUSR2", log)
    assert started and caught, log
    at = lambda m: datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")  # noqa: E731
    warned_after = (at(caught) - at(started)).total_seconds()
    assert 15 <= warned_after <= 60, warned_after
    keys = ("submitted job", "Starting with", "Caught signal", "warning signal", "Interrupted", "Requeued",
            "Resumed from", "COMPLETED")
    print("".join(f"  | {ln}\n" for ln in log.splitlines() if any(k in ln for k in keys)), end="")
    print(f"time limit 1 min, signal_delay_s 10: USR2 {warned_after:.1f} s after the start, requeued "
          f"{s['requeue_count']}x, resumed at epoch {m.group(1)} of {epochs}; {took:.1f} s submit to end")


def test_two_nodes_x_one_process_equal_a_local_two_process_ddp_run(slurm, tmp_path):
    ref = tmp_path / "local"
    r = cli("run", "-o", str(tiny(tmp_path, "local")), "--runtime.name", "local", "--nproc-per-node", "2",
            "--no-cache")
    assert r.returncode == 0, r.stderr
    r = cli("run", "-o", str(tiny(tmp_path, "exp", nodes=2)), "--nproc-per-node", "1", "--no-cache")
    assert r.returncode == 0, r.stderr + r.stdout
    jid = job_id(r.stderr)
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in r.stderr
    # one torchrun per node, node ranks 0 and 1, rendezvous on the first node (n1 does not resolve: 127.0.0.1)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "exp.slurm" / jid).glob("*_log.err")))
    assert "x 2 nodes (this one: node rank 0)" in logs and "x 2 nodes (this one: node rank 1)" in logs
    assert_same(tmp_path / "exp", ref)
    s = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())["scheduler"]
    assert s["job_id"] == jid and s["node_list"] == "n[1-2]" and s["requested"]["nodes"] == 2


def test_scancel_ends_interrupted_and_the_resume_command_works(slurm, tmp_path):
    ref = local_reference(tmp_path, epochs=4)
    proc, out, err = _start_slow(tmp_path, tiny(tmp_path, "exp", epochs=4))
    _wait_for(tmp_path / "exp" / "ckpt_last_model.pth.tar", proc, err)
    jid = job_id(err.read_text())
    subprocess.run(["scancel", jid], check=True, timeout=30)
    assert proc.wait(timeout=300) == 130, err.read_text()
    stderr = err.read_text()
    exp = tmp_path / "exp"
    resume = f"bootstrap-repro run -o {exp / 'options.yaml'} --exp.resume last"
    assert f"slurm: job {jid} INTERRUPTED (exit code 130)" in stderr and f"resume with: {resume}" in stderr
    assert json.loads((exp / "repro" / "record.json").read_text())["status"] == "INTERRUPTED"
    time.sleep(3)
    r = subprocess.run(["squeue", "-h", "-j", jid], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == ""  # not requeued
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--no-cache")  # on Slurm again
    assert r.returncode == 0, r.stderr
    assert job_id(r.stderr) != jid and "COMPLETED (exit code 0)" in r.stderr
    assert_same(exp, ref)


def test_detach_returns_at_once(slurm, tmp_path):
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), "--no-cache", "--detach")
    assert r.returncode == 0, r.stderr
    jid = job_id(r.stderr)
    assert f"follow it with: tail -f {tmp_path / 'exp.slurm' / jid / f'{jid}_0_log.out'}" in r.stderr
    deadline = time.monotonic() + 120
    while not (tmp_path / "exp.slurm" / jid / f"{jid}_0_result.pkl").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())["status"] == "COMPLETED"


def test_a_job_that_fails_on_the_node_names_the_job_and_its_last_log_lines(slurm, tmp_path):
    r = cli("run", "-o", str(tiny(tmp_path, "exp", setup=["echo setup-broke-here >&2", "exit 3"])), "--no-cache")
    assert r.returncode == 2, r.stderr
    jid = job_id(r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: slurm: job {jid} ended ") and "setup-broke-here" in line, r.stderr


# ----------------------------------------------------------------------------- errors before submitting
def test_unknown_account(slurm, tmp_path):
    """The test cluster has accounting (slurmdbd): its accounts are what sacctmgr lists (root)."""
    r = cli("run", "-o", str(tiny(tmp_path, "exp", account="no_such_lab")))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: runtime.slurm.account: unknown account 'no_such_lab'; sacctmgr lists ")
    assert "root" in r.stderr and "submitted" not in r.stderr and not (tmp_path / "exp").exists()


def test_unknown_partition(slurm, tmp_path):
    r = cli("run", "-o", str(tiny(tmp_path, "exp", partition="gpu-huge")))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: runtime.slurm.partition: unknown partition 'gpu-huge'; sinfo lists debug"
    assert not (tmp_path / "exp.slurm").exists()


def test_slurm_commands_not_found(tmp_path):
    pytest.importorskip("submitit")
    env = {"PATH": f"{Path(sys.executable).parent}:/nonexistent"}
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: runtime.name: slurm, but Slurm's commands are not found (sbatch, sinfo, squeue, "
                                "scancel not on PATH); run on a Slurm login node, or try it locally with "
                                "scripts/slurm-local.sh up")


@pytest.mark.parametrize("value", ["0", "-5"])
def test_time_must_be_a_positive_number(tmp_path, value):
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), "--runtime.slurm.time", value)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: --runtime.slurm.time: must be > 0, got {value}"


def test_time_must_be_a_number_in_the_file(tmp_path):
    r = cli("run", "-o", str(tiny(tmp_path, "exp", time="abc")))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: runtime.slurm.time: must be a number, got 'abc' (in exp.yaml)"


def test_several_nodes_need_nproc_per_node(tmp_path):
    pytest.importorskip("submitit")
    r = cli("run", "-o", str(tiny(tmp_path, "exp", nodes=2)))
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: runtime.slurm.nodes: 2 nodes need --nproc-per-node N (processes per node); "
                                "one process on one node is runtime.slurm.nodes 1")


def test_a_time_limit_shorter_than_the_warning_is_refused(tmp_path):
    """``time: 2`` with the default 90 s warning: Slurm would warn at once, every attempt requeued without progress."""
    pytest.importorskip("submitit")
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), "--runtime.slurm.time", "2")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: runtime.slurm.time: 2 min leaves no time to train before Slurm's warning (signal_delay_s 90 + up to "
        "30 s of Slurm's timer): every attempt would be stopped and requeued at once; set time above 2 min or a "
        "smaller runtime.slurm.signal_delay_s")
    assert not (tmp_path / "exp").exists()
