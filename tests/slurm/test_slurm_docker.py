"""``runtime.slurm.inner: docker``: the Slurm job runs the experiment in the Docker runtime on the node.

Against the real local cluster (``slurm`` fixture) and the real Docker engine with the project image
(``engine`` fixture of ``tests/runtimes/test_docker_engine.py``); the requeue message and the errors
before submitting need neither.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY, cli, write_options
from slurm_cluster import slurm  # noqa: F401 - the fixture
from test_slurm_run import _start_slow, _wait_for, assert_same, job_id

from bootstrap_repro.options import Options, merge
from bootstrap_repro.record._env import SLURM_ENV, requeue_note, scheduler_facts
from bootstrap_repro.runtimes._docker import visible_gpus
from bootstrap_repro.runtimes._slurm import SlurmRun, docker_argv, requeue_flag, slurm_settings

sys.path.insert(0, str(REPO / "tests" / "runtimes"))
from test_docker_engine import containers_under, engine, started_image  # noqa: F401 - the fixture

sys.path.remove(str(REPO / "tests" / "runtimes"))
sys.path.insert(0, str(REPO / "docker"))
import standin

sys.path.remove(str(REPO / "docker"))

SLOW_HOOK = """
import time

def register(engine):  # slows training down (numerics unchanged) so that a signal lands mid-run
    engine.register_hook('train_on_end_batch', lambda e: time.sleep(0.5))
"""
REQUEUED = re.compile(r"slurm: job (\d+|\?) stopped at its warning signal \(time limit or preemption\); saved, "
                      r"requeued: it resumes from its last checkpoint")


def tiny(tmp_path: Path, name: str, epochs: int = 2, dockerfile: str | None = None, **slurm_opts) -> Path:
    docker = {"dockerfile": dockerfile, "build_args": standin.build_args()} if dockerfile else {}
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / name)}, "engine": {"nb_epochs": epochs},
                        "runtime": {"name": "slurm", "slurm": {"time": 5, "inner": "docker", **slurm_opts},
                                    **({"docker": docker} if docker else {})}})
    return write_options(tmp_path / f"{name}.yaml", tree)


def dockerfile(docker_engine) -> str:
    return docker_engine.args[docker_engine.args.index("--runtime.docker.dockerfile") + 1]


def local_reference(tmp_path: Path, epochs: int = 2) -> Path:
    r = cli("run", "-o", str(tiny(tmp_path, "local", epochs)), "--runtime.name", "local", "--no-cache")
    assert r.returncode == 0, r.stderr
    return tmp_path / "local"


def start_slow(tmp_path: Path, opts: Path) -> tuple[subprocess.Popen, Path, Path]:
    return _start_slow(tmp_path, opts, SLOW_HOOK)


def wait_for(path: Path, proc: subprocess.Popen, err: Path, timeout: float = 180) -> None:
    _wait_for(path, proc, err, timeout)


# ----------------------------------------------------------------------------- on Slurm, in Docker
@pytest.mark.slow
def test_tiny_run_in_docker_on_slurm_equals_a_local_run(slurm, engine, tmp_path):
    ref = local_reference(tmp_path)
    r = cli("run", "-o", str(tiny(tmp_path, "exp", dockerfile=dockerfile(engine))), "--no-cache", cwd=REPO)
    assert r.returncode == 0, r.stderr
    jid = job_id(r.stderr)
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in r.stderr
    assert started_image(r.stderr) == engine.image.id  # the Docker runtime's line, from the job's log
    assert "docker: building image" not in r.stderr  # found on the node by its inputs hash
    assert "train epoch 1 (2/2)" in r.stdout
    assert_same(tmp_path / "exp", ref)
    rec = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())
    s = rec["scheduler"]  # measured on the node, handed into the container
    assert s["job_id"] == jid and s["cluster"] == "local" and s["partition"] == "debug"
    assert s["node_list"] in ("n1", "n2") and s["requeue_count"] == 0 and s["requested"]["time"] == 5
    assert s["submitted"] and s["started"] and s["ended"] and s["time_limit"] == "00:05:00"
    assert rec["runtime"]["kind"] == "docker" and rec["runtime"]["image"]["id"] == engine.image.id
    assert rec["environment"]["python"]["executable"] == "/opt/venv/bin/python"  # written in the container
    saved = Options.load(str(tmp_path / "exp" / "options.yaml"), [])
    assert saved.get("runtime.name") == "slurm" and saved.get("runtime.slurm.inner") == "docker"  # resumes so
    assert containers_under(engine.client, tmp_path) == []


@pytest.mark.slow
def test_warning_signal_requeues_in_docker_and_the_resumed_run_equals_an_uninterrupted_one(slurm, engine, tmp_path):
    ref = local_reference(tmp_path, epochs=4)
    exp = tmp_path / "exp"
    proc, out, err = start_slow(tmp_path, tiny(tmp_path, "exp", epochs=4, dockerfile=dockerfile(engine)))
    wait_for(exp / "ckpt_last_model.pth.tar", proc, err)  # epoch 1 of 4 is saved, in the container
    jid = job_id(err.read_text())
    subprocess.run(["scancel", "--signal=USR2", jid], check=True, timeout=30)  # what Slurm sends before the limit
    assert proc.wait(timeout=170) == 0, err.read_text()
    stdout, stderr = out.read_text(), err.read_text()
    assert f"slurm: job {jid} COMPLETED (exit code 0)" in stderr
    assert "warning signal; stopping the run" in stderr and "docker: SIGTERM: stopping the container" in stderr
    assert REQUEUED.search(stderr) and f"slurm: job {jid} stopped at its warning signal" in stderr
    assert "resume with" not in stdout + stderr  # requeued: no manual resume line, here nor in logs.txt
    assert "resume with" not in (exp / "logs.txt").read_text()
    assert re.search(r"Resumed from checkpoint 'last' at epoch [1-3]", stdout)
    assert len(re.findall(r"^docker: container \w+ of image", stderr, re.MULTILINE)) == 2  # one container per start
    assert_same(exp, ref)
    rec = json.loads((exp / "repro" / "record.json").read_text())
    assert rec["status"] == "COMPLETED" and rec["scheduler"]["requeue_count"] == 1
    assert rec["scheduler"]["job_id"] == jid and rec["runtime"]["image"]["id"] == engine.image.id
    assert not requeue_flag(exp).exists()
    assert containers_under(engine.client, tmp_path) == []


@pytest.mark.slow
def test_scancel_stops_the_container_and_ends_interrupted(slurm, engine, tmp_path):
    exp = tmp_path / "exp"
    proc, _, err = start_slow(tmp_path, tiny(tmp_path, "exp", epochs=4, dockerfile=dockerfile(engine)))
    wait_for(exp / "ckpt_last_model.pth.tar", proc, err)
    jid = job_id(err.read_text())
    subprocess.run(["scancel", jid], check=True, timeout=30)
    assert proc.wait(timeout=170) == 130, err.read_text()
    stderr = err.read_text()
    assert "docker: SIGTERM: stopping the container" in stderr
    assert f"slurm: job {jid} INTERRUPTED (exit code 130)" in stderr
    assert f"resume with: bootstrap-repro run -o {exp / 'options.yaml'} --exp.resume last" in stderr
    assert not REQUEUED.search(stderr)
    assert json.loads((exp / "repro" / "record.json").read_text())["status"] == "INTERRUPTED"
    assert containers_under(engine.client, tmp_path) == []


# ----------------------------------------------------------------------------- the requeue message
def test_requeue_note_only_with_the_flag(tmp_path, monkeypatch):
    flag = tmp_path / ".exp.slurm-requeue"
    monkeypatch.delenv(SLURM_ENV, raising=False)
    assert requeue_note() is None
    monkeypatch.setenv(SLURM_ENV, json.dumps({"requested": {}, "requeue_flag": str(flag)}))
    assert requeue_note() is None  # scancel, Ctrl-C: the resume line
    flag.write_text("1234")
    assert requeue_note() == ("slurm: job 1234 stopped at its warning signal (time limit or preemption); saved, "
                              "requeued: it resumes from its last checkpoint")


def test_checkpoint_stops_the_run_saying_it_is_requeued_not_how_to_resume(tmp_path, monkeypatch, capfd):
    """The job's callable, on this machine: its checkpoint (Slurm's USR2) stops a real run, which says so."""
    pytest.importorskip("submitit")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slow_hook.py").write_text(SLOW_HOOK)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{tmp_path / 'plugins'}")
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "slow_hook")
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    exp = tmp_path / "exp"
    opts = tiny(tmp_path, "exp", epochs=4, inner="local")
    job = SlurmRun(["-o", str(opts), "--no-cache"], {"time": 5}, flag=str(requeue_flag(exp)))
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(job()))
    runner.start()
    deadline = time.monotonic() + 120
    while not (exp / "ckpt_last_model.pth.tar").exists():
        assert runner.is_alive() and time.monotonic() < deadline
        time.sleep(0.1)
    again = job.checkpoint()
    runner.join(timeout=60)
    assert codes == [130]
    assert again.function.resume and again.function.flag == job.flag  # requeued with --exp.resume last
    err = capfd.readouterr().err
    assert "slurm: job 4321 stopped at its warning signal (time limit or preemption); saved, requeued" in err
    assert "resume with" not in err and "resume with" not in (exp / "logs.txt").read_text()
    assert not requeue_flag(exp).exists()


# ----------------------------------------------------------------------------- facts, GPUs, errors
def test_facts_measured_on_the_node_are_the_containers(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n2")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    payload = SlurmRun([], {"time": 5}, flag="/x", inner="docker").payload()
    assert payload["facts"]["job_id"] == "77" and payload["facts"]["node_list"] == "n2"
    assert payload["facts"]["requeue_count"] == 1 and payload["facts"]["requested"] == {"time": 5}
    for var in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_RESTART_COUNT"):  # as in the container
        monkeypatch.delenv(var)
    monkeypatch.setenv(SLURM_ENV, json.dumps(payload))
    assert scheduler_facts() == payload["facts"]
    assert "facts" not in SlurmRun([], {}, inner="local").payload()  # the run measures them itself


def test_the_container_gets_the_jobs_gpus(tiny_options):
    opt = tiny_options({"runtime": {"name": "slurm", "slurm": {"inner": "docker", "gpus_per_node": 2}}})
    assert docker_argv(opt, slurm_settings(opt, docker_ok=True)) == ["--runtime.docker.gpus", "all"]
    assert visible_gpus(-1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]  # Slurm's allocation on the node
    opt = tiny_options({"runtime": {"name": "slurm", "slurm": {"inner": "docker", "gpus_per_node": 2},
                                    "docker": {"gpus": 1}}})
    assert docker_argv(opt, slurm_settings(opt, docker_ok=True)) == []
    opt = tiny_options({"runtime": {"name": "slurm", "slurm": {"inner": "docker"}}})
    assert docker_argv(opt, slurm_settings(opt, docker_ok=True)) == []


def test_sweep_workers_refuse_inner_docker(tiny_options):
    opt = tiny_options({"runtime": {"name": "slurm", "slurm": {"inner": "docker"}}})
    with pytest.raises(Exception, match=r"^runtime.slurm.inner: docker runs `bootstrap-repro run` jobs, not sweep "
                                        r"workers yet; use inner local$"):
        slurm_settings(opt)


@pytest.mark.parametrize(("args", "line"), [
    (["--runtime.slurm.nodes", "2", "--nproc-per-node", "1"],
     ("runtime.slurm.inner: docker runs one container on one node; nodes 2 needs inner local (multi-node DDP in "
      "containers is not supported)")),
    (["--runtime.docker.gpus", "all"],
     ("runtime.docker.gpus: all asks for GPUs but runtime.slurm.gpus_per_node is 0; set "
      "--runtime.slurm.gpus_per_node N (the container gets the job's GPUs)")),
    (["--runtime.docker.gpus", "4", "--runtime.slurm.gpus_per_node", "2"],
     ("runtime.docker.gpus: 4 GPUs asked but the job has runtime.slurm.gpus_per_node 2; lower runtime.docker.gpus "
      "or raise runtime.slurm.gpus_per_node")),
    (["--runtime.docker.gpus", "device=0,1", "--runtime.slurm.gpus_per_node", "2"],
     ("runtime.docker.gpus: 'device=0,1': device ids cannot be chosen in a Slurm job (Slurm picks the job's GPUs); "
      "use all or a count, with runtime.slurm.gpus_per_node")),
    (["--runtime.docker.shm_size", "2GB"], "runtime.docker.shm_size: expected a size like 512m or 2g, got '2GB'"),
    (["--runtime.docker.dockerfile", "nope/Dockerfile"],
     "runtime.docker.dockerfile: nope/Dockerfile is not a file; give the path of a Dockerfile"),
])
def test_bad_docker_input_is_refused_before_submitting(tmp_path, args, line):
    """Checked on the client without Slurm nor Docker: one line, exit 2, nothing submitted."""
    env = {"PATH": f"{Path(sys.executable).parent}:/nonexistent", "DOCKER_HOST": "unix:///nonexistent.sock"}
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), *args, env=env)
    assert (r.returncode, r.stderr.strip()) == (2, f"error: {line}")
    assert not (tmp_path / "exp.slurm").exists()


def test_unknown_inner_is_refused(tmp_path):
    r = cli("run", "-o", str(tiny(tmp_path, "exp")), "--runtime.slurm.inner", "podman")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: --runtime.slurm.inner: ") and "podman" in r.stderr, r.stderr
