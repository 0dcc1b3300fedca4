"""The Docker runtime without a Docker engine: options, build context and its hash, mounts, error texts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO, cli
from bootstrap_repro.errors import OptionsError, ReproError
from bootstrap_repro.runtimes import (
    CONTAINER_ENV,
    DockerSettings,
    DockerUnavailableError,
    ExpDirNotWritableError,
    wants_docker,
)
from bootstrap_repro.runtimes._docker import _plan_mounts, check_writable, connect, default_dockerfile
from bootstrap_repro.runtimes._docker_context import BuildContext, base_images


def settings(tiny_options, **docker) -> DockerSettings:
    return DockerSettings.from_options(tiny_options({"runtime": {"name": "docker", "docker": docker}}))


# --------------------------------------------------------------------------- options
def test_runtime_name_selects_docker_except_inside_a_container(tiny_options, monkeypatch):
    monkeypatch.delenv(CONTAINER_ENV, raising=False)
    assert wants_docker(tiny_options()) is False
    assert wants_docker(tiny_options(argv=["--runtime.name", "docker"])) is True
    monkeypatch.setenv(CONTAINER_ENV, "{}")
    assert wants_docker(tiny_options(argv=["--runtime.name", "docker"])) is False


def test_unknown_runtime_name(tiny_options):
    with pytest.raises(OptionsError, match=r"^--runtime.name: must be one of 'local', 'docker' or 'slurm', got 'podman'$"):
        wants_docker(tiny_options(argv=["--runtime.name", "podman"]))


def test_defaults_keep_the_existing_runtime_keys(tiny_options):
    opt = tiny_options()
    assert opt["runtime.nproc_per_node"] == 1 and opt["runtime.name"] == "local"
    s = DockerSettings.from_options(opt)
    assert (s.image, s.gpus, s.shm_size, s.build_args, s.env, s.mounts) == (None, None, "2g", {}, {}, ())
    assert s.dockerfile == REPO / "Dockerfile" == default_dockerfile()


@pytest.mark.parametrize("value, expected", [
    ("none", None), (None, None), ("all", -1), (2, 2), ("2", 2), ("device=0,2", ["0", "2"]), ([1, 3], ["1", "3"]),
])
def test_gpus_values(tiny_options, value, expected):
    assert settings(tiny_options, gpus=value).gpus == expected


@pytest.mark.parametrize("value", ["some", 0, "device=", "-1"])
def test_gpus_bad_value(tiny_options, value):
    with pytest.raises(OptionsError, match=r"^runtime.docker.gpus: expected none, all, a count \(e.g. 2\) or "
                                           r"device=ID\[,ID\] \(e.g. device=0,1\), got "):
        settings(tiny_options, gpus=value)


def test_gpus_from_the_command_line(tiny_options):
    opt = tiny_options(argv=["--runtime.docker.gpus", "device=1"])
    assert DockerSettings.from_options(opt).gpus == ["1"]


def test_env_and_build_args_as_mapping_or_list(tiny_options):
    s = settings(tiny_options, env={"A": 1, "B": True}, build_args=["BASE_IMAGE=x:1", "PIP_ARGS=--no-index -q"])
    assert s.env == {"A": "1", "B": "true"}
    assert s.build_args == {"BASE_IMAGE": "x:1", "PIP_ARGS": "--no-index -q"}
    opt = tiny_options(argv=["--runtime.docker.env", "X=1", "Y=a=b"])
    assert DockerSettings.from_options(opt).env == {"X": "1", "Y": "a=b"}


def test_env_bad_items(tiny_options):
    with pytest.raises(OptionsError, match=r"^runtime.docker.build_args: expected NAME=VALUE items, got 'JUSTNAME'$"):
        settings(tiny_options, build_args=["JUSTNAME"])
    with pytest.raises(OptionsError, match=r"^runtime.docker.build_args: '1X' is not a valid variable name"):
        settings(tiny_options, build_args={"1X": "a"})


def test_env_names_alone_come_from_the_host(tiny_options, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s3cret")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    assert settings(tiny_options, env=["WANDB_API_KEY", "A=1"]).env == {"WANDB_API_KEY": "s3cret", "A": "1"}
    assert settings(tiny_options, env={"WANDB_API_KEY": None}).env == {"WANDB_API_KEY": "s3cret"}
    with pytest.raises(OptionsError, match=r"^runtime.docker.env: NOT_SET_HERE is to be passed from the host, but it "
                                           r"is not set here; export it or give NOT_SET_HERE=VALUE$"):
        settings(tiny_options, env=["NOT_SET_HERE"])


def test_shm_size_and_mounts_and_dockerfile_checked(tiny_options, tmp_path):
    with pytest.raises(OptionsError, match=r"^runtime.docker.shm_size: expected a size like 512m or 2g, got '2 GB'$"):
        settings(tiny_options, shm_size="2 GB")
    with pytest.raises(OptionsError, match=r"^runtime.docker.mounts: /nonexistent/data does not exist; mounts are "
                                           r"host paths \(PATH or PATH:rw\)$"):
        settings(tiny_options, mounts=["/nonexistent/data"])
    assert settings(tiny_options, mounts=[str(tmp_path), f"{REPO}:rw"]).mounts == ((tmp_path, True), (REPO, False))
    with pytest.raises(OptionsError, match=r"^runtime.docker.dockerfile: nope/Dockerfile is not a file; give the path "
                                           r"of a Dockerfile$"):
        settings(tiny_options, dockerfile="nope/Dockerfile")


# --------------------------------------------------------------------------- build inputs
def test_base_images_resolve_args_and_skip_stages():
    text = (
        "# comment\nARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime\nARG TAG\n"
        "FROM ${BASE_IMAGE} AS build\nRUN echo \\\n  continued\nFROM build\nFROM --platform=linux/amd64 debian:$TAG\n"
        "FROM scratch\n"
    )
    assert base_images(text, {}) == ["pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "debian:"]
    assert base_images(text, {"BASE_IMAGE": "mine:1", "TAG": "12"}) == ["mine:1", "debian:12"]


def test_project_context_is_exactly_what_the_image_installs():
    ctx = BuildContext.collect(REPO / "Dockerfile")
    assert {"Dockerfile", ".dockerignore", "pyproject.toml", "setup.py", "README.md", "docker/install_deps.py",
            "docker/entrypoint.sh", "bootstrap_repro/__init__.py", "bootstrap_repro/views/template.html"} <= set(ctx.files)
    outside = [f for f in ctx.files if f.split("/")[0] not in
               {"Dockerfile", ".dockerignore", "pyproject.toml", "setup.py", "README.md", "docker", "bootstrap_repro"}]
    assert outside == []
    assert not [f for f in ctx.files if "__pycache__" in f or f.endswith(".pyc")]
    assert "docker/standin.py" not in ctx.files  # test tooling does not change the image


def write_context(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "Dockerfile").write_text("FROM base\nCOPY . /src\n")
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"x")
    (root / "logs" / "big.bin").write_bytes(b"0" * 10)
    (root / "logs" / "keep.txt").write_text("kept\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / ".dockerignore").write_text("# generated\nlogs\n**/__pycache__\n!logs/keep.txt\n")
    return root / "Dockerfile"


def test_dockerignore_with_exceptions(tmp_path):
    ctx = BuildContext.collect(write_context(tmp_path))
    assert ctx.files == (".dockerignore", "Dockerfile", "logs/keep.txt", "pkg/a.py", "run.sh")


def test_digest_follows_the_inputs_only(tmp_path):
    dockerfile = write_context(tmp_path)
    d0 = BuildContext.collect(dockerfile).digest({}, {"base": "sha256:1"})
    assert BuildContext.collect(dockerfile).digest({}, {"base": "sha256:1"}) == d0
    (tmp_path / "logs" / "big.bin").write_bytes(b"1" * 10)  # ignored file
    (tmp_path / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"y")
    assert BuildContext.collect(dockerfile).digest({}, {"base": "sha256:1"}) == d0
    assert BuildContext.collect(dockerfile).digest({"A": "1"}, {"base": "sha256:1"}) != d0  # build arg
    assert BuildContext.collect(dockerfile).digest({}, {"base": "sha256:2"}) != d0  # base image rebuilt
    (tmp_path / "run.sh").chmod(0o644)  # mode
    d1 = BuildContext.collect(dockerfile).digest({}, {"base": "sha256:1"})
    assert d1 != d0
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")  # content
    assert BuildContext.collect(dockerfile).digest({}, {"base": "sha256:1"}) not in (d0, d1)


def test_context_tar_is_deterministic_and_complete(tmp_path):
    ctx = BuildContext.collect(write_context(tmp_path))
    blobs = []
    for _ in range(2):
        buf = io.BytesIO()
        ctx.write_tar(buf)
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == list(ctx.files)
        assert members["run.sh"].mode == 0o755 and members["pkg/a.py"].mode == 0o644
        assert tar.extractfile("pkg/a.py").read() == b"A = 1\n"


# --------------------------------------------------------------------------- mounts, dirs
def test_mount_plan(tmp_path):
    repo, logs = tmp_path / "repo", tmp_path / "repo" / "logs"
    plan = _plan_mounts([(repo, True), (logs, False), (repo / "src", True), (repo, True), (tmp_path / "x", True)])
    assert plan == [(str(repo), True), (str(tmp_path / "x"), True), (str(logs), False)]
    # the same dir asked read-only and read-write is mounted once, read-write
    assert _plan_mounts([(tmp_path, True), (tmp_path, False)]) == [(str(tmp_path), False)]


def test_exp_dir_under_a_file_is_not_writable(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ExpDirNotWritableError, match=rf"^exp.dir: {tmp_path}/afile/exp cannot be written by uid "
                                                     rf"{os.getuid()} \({tmp_path}/afile is not a writable directory\); "
                                                     r"choose another --exp.dir or fix its permissions$"):
        check_writable(tmp_path / "afile" / "exp")
    check_writable(tmp_path / "new" / "deeper" / "exp")  # made later, under a writable dir
    assert issubclass(ExpDirNotWritableError, (ReproError, PermissionError))


# --------------------------------------------------------------------------- no engine
def test_no_engine_reachable(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(DockerUnavailableError, match=rf"^runtime.name: docker: no Docker engine reachable at "
                                                     rf"unix://{tmp_path}/docker.sock \(.*\); start it \(sudo systemctl "
                                                     r"start docker, or dockerd\) or set DOCKER_HOST$"):
        connect()


def test_cli_without_engine_is_one_line_and_leaves_nothing(tiny_file, tmp_path):
    options = tiny_file()
    exp = tmp_path / "deep" / "exp"
    r = cli("run", "-o", str(options), "--runtime.name", "docker", "--exp.dir", str(exp),
            env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: runtime.name: docker: no Docker engine reachable")
    assert not (tmp_path / "deep").exists()


def test_cli_bad_docker_option_is_one_line(tiny_file):
    r = cli("run", "-o", str(tiny_file()), "--runtime.name", "docker", "--runtime.docker.gpus", "many")
    assert r.returncode == 2
    assert r.stderr.startswith("error: runtime.docker.gpus: expected none, all") and r.stderr.count("\n") == 1


def test_help_does_not_import_the_docker_sdk(tiny_file):
    code = ("import sys, contextlib, io\nfrom bootstrap_repro.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['run', '-h'])\n    main(['run', '-o', {str(tiny_file())!r}, '-h'])\n"
            "print('docker' in sys.modules, 'bootstrap_repro.runtimes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_run_help_lists_the_docker_options(tiny_file):
    r = cli("run", "-o", str(tiny_file()), "-h")
    for key in ("runtime.name", "runtime.docker.image", "runtime.docker.dockerfile", "runtime.docker.build_args",
                "runtime.docker.gpus", "runtime.docker.shm_size", "runtime.docker.env", "runtime.docker.mounts",
                "runtime.docker.network"):
        assert f"--{key} " in r.stdout, key


def test_run_spec(tiny_options, tmp_path, monkeypatch):
    from docker.types import DeviceRequest

    from bootstrap_repro.runtimes._docker import ImageInfo, run_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-passed")
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("PYTHONPATH", "BOOTSTRAP_REPRO_NO_CACHE", "BOOTSTRAP_REPRO_HOOKS"):
        monkeypatch.delenv(name, raising=False)
    opt = tiny_options({"runtime": {"name": "docker", "docker": {"gpus": "device=1", "env": {"WANDB_MODE": "off"}}}})
    exp = tmp_path / "runs" / "exp"
    base = {"name": "base:1", "id": "sha256:b", "repo_digest": None}
    info = ImageInfo("sha256:abc", "bootstrap-repro:0123", None, [base], "f" * 64, built=False)
    spec = run_spec(opt, "options.yaml", ["--engine.nb_epochs", "2"], DockerSettings.from_options(opt), info, exp)
    assert spec.command == ["python", "-m", "bootstrap_repro", "run", "-o", str(tmp_path / "options.yaml"),
                            "--engine.nb_epochs", "2"]
    assert spec.user == f"{os.getuid()}:{os.getgid()}" and spec.working_dir == str(tmp_path)
    # options dir = cwd (read-only), exp parent and result cache (read-write), same paths inside
    assert spec.mounts == [(str(tmp_path), True), (str(tmp_path / "runs"), False), (str(tmp_path / "cache"), False)]
    assert spec.labels == {"bootstrap-repro": "1", "bootstrap-repro.exp": str(exp), "bootstrap-repro.inputs": "f" * 64}
    env = spec.env
    assert (env["HOME"], env["PYTHONUNBUFFERED"], env["OMP_NUM_THREADS"], env["WANDB_MODE"]) == ("/tmp", "1", "3", "off")
    assert env["BOOTSTRAP_REPRO_CACHE_DIR"] == str(tmp_path / "cache") and "AWS_SECRET_ACCESS_KEY" not in env
    facts = json.loads(env[CONTAINER_ENV])
    assert facts["kind"] == "docker" and facts["image"] == info.record()
    assert facts["run"]["user"] == spec.user and facts["run"]["gpus"] == ["1"] and facts["run"]["init"] is True
    assert sorted(facts["run"]["env"]) == ["OMP_NUM_THREADS", "WANDB_MODE"]  # names only
    kw = spec.create_kwargs()
    assert kw["init"] is True and kw["privileged"] is False and kw["image"] == "sha256:abc"
    assert kw["device_requests"] == [DeviceRequest(device_ids=["1"], capabilities=[["gpu"]])]
    assert [(m["Source"], m["Target"], m["ReadOnly"], m["Type"]) for m in kw["mounts"]][0] == (
        str(tmp_path), str(tmp_path), True, "bind")


def test_run_spec_keeps_the_exp_dir_writable_when_resuming_from_its_options(tiny_options, tmp_path, monkeypatch):
    from bootstrap_repro.runtimes._docker import ImageInfo, run_spec

    exp = tmp_path / "runs" / "exp"
    exp.mkdir(parents=True)
    monkeypatch.chdir(exp)  # cwd and options file inside the exp dir, outside any git repo
    for name in ("PYTHONPATH", "BOOTSTRAP_REPRO_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    opt = tiny_options({"runtime": {"name": "docker"}})
    info = ImageInfo("sha256:abc", None, None, [], None, built=False)
    spec = run_spec(opt, str(exp / "options.yaml"), ["--exp.resume", "last"], DockerSettings.from_options(opt),
                    info, exp)
    assert (str(tmp_path / "runs"), False) in spec.mounts
    assert not [p for p, ro in spec.mounts if ro and Path(p) in (exp, *exp.parents)]
    assert spec.env.get("BOOTSTRAP_REPRO_NO_CACHE") is None
    no_cache = run_spec(opt, "options.yaml", [], DockerSettings.from_options(opt), info, exp, cache=False)
    assert no_cache.env["BOOTSTRAP_REPRO_NO_CACHE"] == "1"  # `run --no-cache` reaches the run inside


def test_cache_key_follows_the_image_id_not_the_run_arguments():
    from bootstrap_repro.record import environment, environment_fingerprint

    env = environment(packages=[("torch", "2.13.0")])
    docker = {"kind": "docker", "image": {"id": "sha256:a", "tag": "bootstrap-repro:1"}, "run": {"mounts": ["/x"]}}
    same = environment_fingerprint(env, {**docker, "run": {"mounts": ["/elsewhere"]}})
    other_image = environment_fingerprint(env, {**docker, "image": {"id": "sha256:b"}})
    assert environment_fingerprint(env, docker) == same
    assert len({environment_fingerprint(env, docker), other_image, environment_fingerprint(env, {"kind": "local"})}) == 3


def test_record_runtime_comes_from_the_container_env(monkeypatch):
    from bootstrap_repro.record import current_runtime

    monkeypatch.delenv(CONTAINER_ENV, raising=False)
    assert current_runtime() == {"kind": "local"}
    monkeypatch.setenv(CONTAINER_ENV, json.dumps({"kind": "docker", "image": {"id": "sha256:a"}}))
    assert current_runtime() == {"kind": "docker", "image": {"id": "sha256:a"}}
    monkeypatch.setenv(CONTAINER_ENV, "not json")
    assert current_runtime() == {"kind": "local"}


def test_network_option(tiny_options, tmp_path, monkeypatch):
    from bootstrap_repro.runtimes._docker import ImageInfo, run_spec

    monkeypatch.chdir(tmp_path)
    info = ImageInfo("sha256:abc", None, None, [], None, built=False)
    default = tiny_options({"runtime": {"name": "docker"}})
    spec = run_spec(default, "options.yaml", [], DockerSettings.from_options(default), info, tmp_path / "exp")
    assert "network_mode" not in spec.create_kwargs() and spec.record()["network"] is None  # Docker's default
    host = tiny_options({"runtime": {"name": "docker", "docker": {"network": "host"}}})
    spec = run_spec(host, "options.yaml", [], DockerSettings.from_options(host), info, tmp_path / "exp")
    assert spec.create_kwargs()["network_mode"] == "host" and spec.record()["network"] == "host"
    bad = tiny_options({"runtime": {"name": "docker", "docker": {"network": "no such/net"}}})
    with pytest.raises(OptionsError, match=r"^runtime\.docker\.network: expected host, bridge, none or a Docker "
                                           r"network's name, got 'no such/net'$"):
        DockerSettings.from_options(bad)


@pytest.mark.parametrize("asked, visible, expected", [
    (-1, "1,3", ["1", "3"]),       # all: the visible ones
    (1, "2,3", ["2"]),             # a count: the first visible ones
    (2, "GPU-aa,GPU-bb", ["GPU-aa", "GPU-bb"]),
    (["0"], "1", ["0"]),           # explicit ids are kept
    (-1, "", None),                # nothing visible: no GPU
    (-1, "0,-1,2", ["0"]),         # CUDA stops at the first invalid id
    (None, "1", None),
    (-1, None, -1),                # not set: as asked
])
def test_cuda_visible_devices_narrows_the_container_gpus(asked, visible, expected):
    from bootstrap_repro.runtimes._docker import visible_gpus

    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert visible_gpus(asked, env) == expected


def test_more_gpus_asked_than_visible_is_a_clear_error():
    from bootstrap_repro.runtimes._docker import visible_gpus

    with pytest.raises(OptionsError, match=r"^runtime\.docker\.gpus: 2 GPUs asked but CUDA_VISIBLE_DEVICES shows 1 "
                                           r"\(3\); lower runtime\.docker\.gpus or widen CUDA_VISIBLE_DEVICES$"):
        visible_gpus(2, {"CUDA_VISIBLE_DEVICES": "3"})


def test_a_sweep_trial_context_reaches_the_container(tiny_options, tmp_path, monkeypatch):
    from bootstrap_repro.runtimes._docker import TRIAL_ENV, ImageInfo, run_spec
    from bootstrap_repro.sweep import TRIAL_ENV as SWEEP_TRIAL_ENV

    assert TRIAL_ENV == SWEEP_TRIAL_ENV
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRIAL_ENV, '{"study": "s", "number": 3}')
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    opt = tiny_options({"runtime": {"name": "docker", "docker": {"gpus": "all"}}})
    spec = run_spec(opt, "options.yaml", [], DockerSettings.from_options(opt), ImageInfo("sha256:a", None, None, [],
                                                                                         None, built=False), tmp_path)
    assert spec.env[TRIAL_ENV] == '{"study": "s", "number": 3}' and "CUDA_VISIBLE_DEVICES" not in spec.env
    assert spec.gpus == ["1"]  # the trial's GPU, as a device request


def test_mounts_network_and_shm_size_are_not_in_the_cache_key(tiny_options):
    from bootstrap_repro.record import cache_key

    plain = tiny_options({"runtime": {"name": "docker"}})
    moved = tiny_options({"runtime": {"name": "docker", "docker": {"mounts": ["/tmp:rw"], "network": "host",
                                                                     "shm_size": "8g"}}})
    other = tiny_options({"runtime": {"name": "docker", "docker": {"gpus": "all"}}})
    assert cache_key(plain, "c", "e") == cache_key(moved, "c", "e") != cache_key(other, "c", "e")


def test_a_trial_launcher_gets_sigterm_when_the_sweep_driver_dies(tmp_path):
    """The driver (here: a stand-in process) is killed -9; its trial's launcher must not outlive it."""
    launcher = ("import time\nfrom bootstrap_repro.runtimes._docker import _stop_with_sweep_driver\n"
                "_stop_with_sweep_driver()\nprint('armed', flush=True)\ntime.sleep(60)\n")
    driver = ("import json, os, subprocess, sys, time\n"
              "env = {**os.environ, 'BOOTSTRAP_REPRO_TRIAL': json.dumps({'driver_pid': os.getpid()})}\n"
              f"p = subprocess.Popen([sys.executable, '-c', {launcher!r}], env=env, stdout=open({str(tmp_path / 'out')!r}, 'w'))\n"
              "print(p.pid, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    deadline = time.monotonic() + 30
    while "armed" not in (tmp_path / "out").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        if _state(child) in ("Z", None):
            break
        time.sleep(0.05)
    assert _state(child) in ("Z", None)  # ended (a zombie until its new parent reaps it)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


# --------------------------------------------------------------------------- the watcher (fake engine)
class FakeContainer:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def stop(self, timeout):
        self.calls.append(("stop", timeout))

    def remove(self, force):
        self.calls.append(("remove", force))


class FakeEngine:
    """``client.containers.get(name)``: NotFound until the ``appears``-th lookup."""

    def __init__(self, appears: int | None) -> None:
        self.calls: list = []
        self.lookups = 0
        self.appears = appears
        self.containers = self

    def get(self, name):
        import docker

        self.lookups += 1
        self.calls.append(("get", name))
        if self.appears is None or self.lookups < self.appears:
            raise docker.errors.NotFound(f"No such container: {name}")
        return FakeContainer(self.calls)


def test_watcher_leaves_the_container_alone_when_the_client_ended_the_run():
    from bootstrap_repro.runtimes._docker import _watch

    engine = FakeEngine(appears=1)
    assert _watch(engine, "c1", 60, io.BytesIO(b"done\n"), sleep=lambda s: None) == 0
    assert engine.calls == []  # no engine call: the client removed its container itself


def test_watcher_stops_and_removes_the_container_of_a_dead_client():
    from bootstrap_repro.runtimes._docker import _watch

    engine = FakeEngine(appears=1)
    assert _watch(engine, "c1", 60, io.BytesIO(b""), sleep=lambda s: None) == 2  # EOF without "done"
    assert engine.calls == [("get", "c1"), ("stop", 60), ("remove", True)]  # stopped as by Ctrl-C: resumable


def test_watcher_waits_for_a_create_in_flight_then_gives_up():
    from bootstrap_repro.runtimes._docker import _watch

    slept: list = []
    late = FakeEngine(appears=3)  # the create the dead client sent lands after two lookups
    assert _watch(late, "c1", 5, io.BytesIO(b""), retries=(0.5, 1.0, 2.0), sleep=slept.append) == 2
    assert late.calls[-2:] == [("stop", 5), ("remove", True)] and slept == [0.0, 0.5, 1.0]
    never = FakeEngine(appears=None)  # died before creating anything: nothing to do
    assert _watch(never, "c1", 5, io.BytesIO(b""), retries=(0.5, 1.0), sleep=lambda s: None) == 1
    assert never.calls == [("get", "c1")] * 3


def test_watcher_without_an_engine_reports_and_the_run_goes_on_unwatched(tmp_path, monkeypatch):
    """A watcher that cannot reach the engine says why; the client warns, naming the container."""
    from bootstrap_repro.runtimes._docker import _start_watcher, _watcher_ready

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    log = io.StringIO()
    assert _watcher_ready(_start_watcher("bootstrap-repro-x", log), "bootstrap-repro-x", log) is None
    text = log.getvalue()
    assert text.startswith("docker: warning: no watcher for container bootstrap-repro-x (cannot reach the Docker "
                           "engine: ") and text.endswith("; if bootstrap-repro is killed, stop the container with: "
                                                         "docker stop bootstrap-repro-x\n"), text
