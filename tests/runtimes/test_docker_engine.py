"""The Docker runtime against a real Docker engine: the digits example trained in a container.

The module fixture starts ``dockerd`` when it is not running (as root), builds the offline
stand-in base image (``docker/standin.py``: mmdebstrap + ``docker import``, skipped when its
recipe is unchanged), serves a local wheelhouse on 127.0.0.1 and builds the project image from
a copy of its build context (or finds it, when its inputs are unchanged).  Without Docker these tests skip with the
reason, except in CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import IN_CI, REPO, cli

pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO / "docker"))
import standin  # noqa: E402  (docker/standin.py: the offline stand-ins)

sys.path.remove(str(REPO / "docker"))
sys.path.insert(0, str(REPO / "tests" / "sweep"))
from sweep_helpers import study_trials, write_sweep  # noqa: E402

sys.path.remove(str(REPO / "tests" / "sweep"))

DIGITS = REPO / "examples" / "digits" / "options.yaml"
LABEL_FILTER = {"label": "bootstrap-repro=1"}
#: uid:gid of the non-root runs when the tests run as root.
OTHER_UID = 1000


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _ping() -> bool:
    import docker

    try:
        docker.from_env(timeout=5).ping()
    except (docker.errors.DockerException, OSError):
        return False
    return True


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A running Docker engine with the project image built on the stand-ins; the wheelhouse served."""
    daemon, context_dir = None, None
    if not _ping():
        if os.getuid() != 0 or not Path("/usr/sbin/dockerd").exists():
            unavailable("no Docker engine reachable and cannot start dockerd (needs root and docker.io)")
        log = (tmp_path_factory.mktemp("dockerd") / "dockerd.log").open("w")
        daemon = subprocess.Popen(["/usr/sbin/dockerd"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not _ping():
            if daemon.poll() is not None or time.monotonic() > deadline:
                unavailable(f"dockerd did not start; see {log.name}")
            time.sleep(0.2)
    try:
        if shutil.which("mmdebstrap") is None:
            unavailable("mmdebstrap is not installed: cannot build the stand-in base image offline")
        build_log = tmp_path_factory.mktemp("build") / "build.log"
        with build_log.open("w") as log:
            wheels = standin.build_wheelhouse(log)
            # Served for the whole module: a rebuild after a code change during the tests still works.
            # A copy of the build context: edits to this checkout while the tests run cannot rebuild it
            # (readable by the non-root user of the tests).
            context_dir = Path(tempfile.mkdtemp(prefix="bootstrap-repro-context-"))
            context_dir.chmod(0o755)
            dockerfile = standin.frozen_context(context_dir)
            with standin.serve(wheels):
                image, seconds = standin.prepare_project_image(log, dockerfile)
                import docker

                yield SimpleNamespace(client=docker.from_env(), image=image, build_s=seconds,
                                      args=["--runtime.name", "docker", "--runtime.docker.dockerfile", str(dockerfile),
                                            "--runtime.docker.build_args",
                                            *(f"{k}={v}" for k, v in standin.build_args().items())])
    finally:
        if context_dir is not None:
            shutil.rmtree(context_dir, ignore_errors=True)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)


@pytest.fixture(scope="module")
def local_digits(tmp_path_factory) -> Path:
    """The digits example (2 epochs) run locally on CPU: the reference."""
    exp = tmp_path_factory.mktemp("local") / "exp"
    r = cli("run", "-o", str(DIGITS), "--engine.nb_epochs", "2", "--exp.dir", str(exp), cwd=REPO,
            env={"BOOTSTRAP_REPRO_NO_CACHE": "1"})
    assert r.returncode == 0, r.stderr
    return exp


def containers_under(client, root: Path) -> list:
    """The containers labelled with an experiment dir under ``root`` (other sessions may run theirs)."""
    return [c for c in client.containers.list(all=True, filters=LABEL_FILTER, ignore_removed=True)
            if c.labels.get("bootstrap-repro.exp", "").startswith(f"{root}/")]


@pytest.fixture(autouse=True)
def no_container_left(engine, tmp_path):
    yield
    left = containers_under(engine.client, tmp_path)
    assert left == [], f"containers left behind: {[c.name for c in left]}"


def started_image(stderr: str) -> str:
    """The image id of the ``docker: container X of image TAG (ID) started`` line."""
    m = re.search(r"^docker: container \w+ of image \S+ \((sha256:\w+)\) started$", stderr, re.M)
    assert m, stderr
    return m.group(1)


def owners(exp: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in [exp, *exp.rglob("*")]}


def options_without(path: Path, *keys: str) -> dict:
    tree = yaml.safe_load(path.read_text())
    for key in keys:
        head, _, last = key.rpartition(".")
        node = tree
        for part in filter(None, head.split(".")):
            node = node[part]
        node.pop(last)
    return tree


def test_digits_in_docker_equals_a_local_run(engine, local_digits, tmp_path):
    exp = tmp_path / "runs" / "exp"
    r = cli("run", "-o", str(DIGITS), "--engine.nb_epochs", "2", "--exp.dir", str(exp), *engine.args, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "docker: building image" not in r.stderr  # the fixture's image, found by its inputs hash
    assert started_image(r.stderr) == engine.image.id
    assert "train epoch 1 (2/2)" in r.stdout  # the container's log, streamed
    # the experiment dir is the one a local run leaves, written by this uid
    assert json.loads((exp / "logs.json").read_text()) == json.loads((local_digits / "logs.json").read_text())
    assert sorted(p.name for p in exp.iterdir()) == sorted(p.name for p in local_digits.iterdir())
    assert options_without(exp / "options.yaml", "exp.dir", "runtime") == \
        options_without(local_digits / "options.yaml", "exp.dir", "runtime")
    assert yaml.safe_load((exp / "options.yaml").read_text())["runtime"]["name"] == "docker"  # resumes in Docker
    assert owners(exp) == {(os.getuid(), os.getgid())}
    record = json.loads((exp / "repro" / "record.json").read_text())
    assert record["environment"]["python"]["executable"] == "/opt/venv/bin/python"  # written inside the container
    runtime = record["runtime"]  # the container facts
    assert runtime["kind"] == "docker" and runtime["image"]["id"] == engine.image.id
    assert runtime["image"]["repo_digest"] is None  # a local build
    base = engine.client.images.get(standin.STANDIN_IMAGE)
    assert runtime["image"]["base_images"] == [{"name": standin.STANDIN_IMAGE, "id": base.id, "repo_digest": None}]
    assert runtime["run"]["user"] == f"{os.getuid()}:{os.getgid()}" and runtime["run"]["init"] is True
    assert {"path": str(exp.parent), "read_only": False} in runtime["run"]["mounts"]
    assert record["environment"]["torch"]["version"] == json.loads(
        (local_digits / "repro" / "record.json").read_text())["environment"]["torch"]["version"]

    # view and compare read a Docker-made dir as any other
    assert cli("view", str(exp)).returncode == 0
    compared = cli("compare", str(exp), str(local_digits))
    assert compared.returncode == 0 and str(exp) in compared.stdout

    # a second run reuses the image: nothing built, same id
    again = cli("run", "-o", str(DIGITS), "--engine.nb_epochs", "1", "--exp.dir", str(tmp_path / "again"),
                *engine.args, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert "docker: building image" not in again.stderr and "Step 1/" not in again.stderr
    assert started_image(again.stderr) == engine.image.id


SLOW_HOOK = textwrap.dedent("""
    import time

    def register(engine):  # slows training down (numerics unchanged) so that a signal lands mid-run
        engine.register_hook('train_on_end_batch', lambda e: time.sleep(0.05))
""")


def test_sigterm_stops_the_container_and_the_run_resumes_in_docker(engine, local_digits, tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slow_hook.py").write_text(SLOW_HOOK)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path / 'plugins'}", "BOOTSTRAP_REPRO_HOOKS": "slow_hook"}
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "bootstrap_repro", "run", "-o", str(DIGITS), "--engine.nb_epochs", "2",
           "--exp.dir", str(exp), *engine.args]
    out_file, err_file = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_file.open("w") as out_f, err_file.open("w") as err_f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out_f, stderr=err_f)
    deadline = time.monotonic() + 120
    while not (exp / "ckpt_last_model.pth.tar").exists():  # epoch 1 of 2 is saved
        assert proc.poll() is None and time.monotonic() < deadline, err_file.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    out, stderr = out_file.read_text(), err_file.read_text()
    assert proc.returncode == 130, stderr  # the run saved and stopped: resumable
    assert "docker: SIGTERM: stopping the container" in stderr
    assert "Interrupted (SIGTERM)" in out + stderr
    assert containers_under(engine.client, tmp_path) == []

    # resume from the saved options (runtime.name: docker): in a container again, to the end
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "run", "-o", str(exp / "options.yaml"),
                        "--exp.resume", "last"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert started_image(r.stderr)
    assert re.search(r"Resumed from checkpoint 'last' at epoch \d", r.stdout)
    assert json.loads((exp / "logs.json").read_text()) == json.loads((local_digits / "logs.json").read_text())


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def watchers_of(pid: int) -> list[int]:
    """The container watchers started by the client ``pid``."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"_watch_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for its new parent (init here) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def wait_for(predicate, seconds: float) -> float | None:
    """Seconds until ``predicate()`` holds (polled every 0.1 s), None if it did not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def running_under(client, root: Path) -> list:
    return [c for c in containers_under(client, root) if c.status in ("created", "running", "restarting", "paused")]


def test_sigkill_of_the_client_stops_its_container_and_the_run_resumes(engine, tmp_path):
    """kill -9 of the host-side bootstrap-repro: its container is stopped (the run saves) and removed within 10 s."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slow_hook.py").write_text(SLOW_HOOK.replace("0.05", "0.25"))
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path / 'plugins'}", "BOOTSTRAP_REPRO_HOOKS": "slow_hook"}
    exp = tmp_path / "exp"
    # ~12 s an epoch with the slow hook: without the watcher the container trains on for ~35 s after the kill
    cmd = [sys.executable, "-m", "bootstrap_repro", "run", "-o", str(DIGITS), "--engine.nb_epochs", "4",
           "--exp.dir", str(exp), *engine.args]
    err_file = tmp_path / "err.txt"
    with err_file.open("w") as err_f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err_f)
    try:
        assert wait_for(lambda: proc.poll() is not None or (exp / "ckpt_last_model.pth.tar").exists(), 120), \
            err_file.read_text()
        assert proc.poll() is None, err_file.read_text()
        [container] = running_under(engine.client, tmp_path)
        assert container.status == "running"
        watchers = watchers_of(proc.pid)
        proc.kill()  # SIGKILL: no handler, no finally
        proc.wait()
        gone_s = wait_for(lambda: not running_under(engine.client, tmp_path), 10)
        assert gone_s is not None, f"container {container.short_id} still running 10 s after SIGKILL of its client"
        removed_s = wait_for(lambda: not containers_under(engine.client, tmp_path), 10)
        assert removed_s is not None
        print(f"container stopped {gone_s:.1f} s and removed {gone_s + removed_s:.1f} s after SIGKILL of its client")
        assert len(watchers) == 1 and wait_for(lambda: ended(watchers[0]), 10) is not None  # the watcher exits
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for left in containers_under(engine.client, tmp_path):  # old code: do not leave a training container
            left.remove(force=True)
    log = (exp / "logs.txt").read_text()
    assert "Interrupted (SIGTERM)" in log  # stopped as by Ctrl-C: the run saved
    # the exp dir is resumable, in Docker again (no slow hook now), to the end
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "run", "-o", str(exp / "options.yaml"),
                        "--exp.resume", "last"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert started_image(r.stderr)
    assert re.search(r"Resumed from checkpoint 'last' at epoch \d", r.stdout)
    assert json.loads((exp / "logs.json").read_text())["eval_epoch.epoch"] == [0, 1, 2, 3]


def test_sigkill_of_the_client_as_its_watcher_starts_leaves_no_container(engine, tmp_path):
    """Killed before (or while) the container is created: nothing runs, nothing is left, the watcher exits."""
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "bootstrap_repro", "run", "-o", str(DIGITS), "--engine.nb_epochs", "20",
           "--exp.dir", str(exp), *engine.args]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found: list[int] = []

        def watcher_started() -> bool:
            found[:] = watchers_of(proc.pid)
            return proc.poll() is not None or bool(found)

        assert wait_for(watcher_started, 60) is not None
        assert proc.poll() is None and len(found) == 1
        proc.kill()
        proc.wait()
        assert wait_for(lambda: ended(found[0]), 15) is not None  # at most its retries for a create in flight
        assert running_under(engine.client, tmp_path) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for left in containers_under(engine.client, tmp_path):
            left.remove(force=True)


def as_user(uid: int, groups: list[int]) -> list[str]:
    """A command prefix that runs as ``uid`` (only when the tests run as root)."""
    if os.getuid() != 0:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups", "--"]


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A dir owned by the non-root user, with a copy of the digits options (outside any git repo)."""
    path = Path(tempfile.mkdtemp(prefix="docker-user-"))
    shutil.copy(DIGITS, path / "options.yaml")
    if os.getuid() == 0:
        for p in (path, path / "options.yaml"):
            os.chown(p, OTHER_UID, OTHER_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as(prefix: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": str(REPO), "BOOTSTRAP_REPRO_NO_CACHE": "1",
           "BOOTSTRAP_REPRO_CACHE_DIR": str(cwd / "cache"), "DOCKER_HOST": os.environ.get("DOCKER_HOST", "")}
    env = {k: v for k, v in env.items() if v}
    return subprocess.run([*prefix, sys.executable, "-m", "bootstrap_repro", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_non_root_user_owns_the_files_and_gets_clear_errors(engine, user_dir):
    uid = OTHER_UID if os.getuid() == 0 else os.getuid()
    socket_gid = os.stat("/var/run/docker.sock").st_gid if Path("/var/run/docker.sock").exists() else None
    if os.getuid() == 0 and socket_gid is None:
        pytest.skip("the Docker socket is not /var/run/docker.sock: cannot give the test user access to it")
    prefix = as_user(uid, [socket_gid] if socket_gid is not None else [])
    exp = user_dir / "runs" / "exp"
    r = run_as(prefix, ["-o", "options.yaml", "--engine.nb_epochs", "1", "--exp.dir", str(exp), *engine.args],
               user_dir)
    assert r.returncode == 0, r.stderr
    assert owners(exp) == {(uid, uid)}

    if os.getuid() != 0:
        return  # the two errors below need another uid than the test's
    # an exp dir the user cannot write (under a root-owned dir): refused before any image or container
    forbidden = user_dir / "root-owned"
    forbidden.mkdir(mode=0o755)
    r = run_as(prefix, ["-o", "options.yaml", "--exp.dir", str(forbidden / "a" / "exp"), *engine.args], user_dir)
    assert r.returncode == 2
    assert r.stderr == (f"error: exp.dir: {forbidden}/a/exp cannot be written by uid {uid} ({forbidden} is not a "
                        f"writable directory); choose another --exp.dir or fix its permissions\n")
    assert list(forbidden.iterdir()) == []
    # no access to the Docker socket
    r = run_as(as_user(uid, []), ["-o", "options.yaml", "--exp.dir", str(user_dir / "denied"), *engine.args],
               user_dir)
    assert r.returncode == 2
    assert r.stderr.startswith("error: runtime.name: docker: permission denied on the Docker socket ")
    assert r.stderr.count("\n") == 1 and not (user_dir / "denied").exists()
    assert containers_under(engine.client, user_dir) == []


def test_gpus_without_an_nvidia_runtime(engine, tmp_path):
    if "nvidia" in (engine.client.info().get("Runtimes") or {}):
        pytest.skip("this Docker engine has the NVIDIA runtime: a GPU request would succeed")
    exp = tmp_path / "new" / "exp"
    r = cli("run", "-o", str(DIGITS), "--exp.dir", str(exp), *engine.args, "--runtime.docker.gpus", "all", cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        'error: runtime.docker.gpus: all asked but this Docker engine has no NVIDIA runtime (could not select device '
        'driver "" with capabilities: [[gpu]]); install the NVIDIA container toolkit, or set --runtime.docker.gpus none')
    assert not (tmp_path / "new").exists()  # the parent made for the mount is removed again


def test_failing_build_shows_the_step_and_its_log(engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {standin.STANDIN_IMAGE}\nRUN echo preparing-step-two && echo broken-on-purpose >&2 && exit 3\n")
    r = cli("run", "-o", str(DIGITS), "--exp.dir", str(tmp_path / "exp"), "--runtime.name", "docker",
            "--runtime.docker.dockerfile", str(tmp_path / "Dockerfile"), cwd=REPO)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert "broken-on-purpose" in r.stderr.split("error:")[0]  # the step's log, above the error
    assert lines[-1] == ("error: runtime.docker: image build failed at Step 2/5 : RUN echo preparing-step-two && echo "
                         "broken-on-purpose >&2 && exit 3: The command '/bin/sh -c echo preparing-step-two && echo "
                         "broken-on-purpose >&2 && exit 3' returned a non-zero code: 3; its log is above")
    assert not (tmp_path / "exp").exists()


def test_missing_base_image_without_registry(engine, tmp_path):
    r = cli("run", "-o", str(DIGITS), "--exp.dir", str(tmp_path / "exp"), "--runtime.name", "docker",
            "--runtime.docker.build_args", "BASE_IMAGE=bootstrap-repro-tests/absent:1", cwd=REPO)
    assert r.returncode == 2
    assert re.fullmatch(
        r"error: runtime.docker.dockerfile: base image: image 'bootstrap-repro-tests/absent:1' is not on this Docker "
        r"engine and pulling it failed \(.+\); docker pull / docker load it, or pass --runtime.docker.build_args "
        r"BASE_IMAGE=<an image on this engine>", r.stderr.splitlines()[-1]), r.stderr
    assert not (tmp_path / "exp").exists()


def test_pinned_image_that_is_gone(engine, tmp_path):
    gone = "sha256:" + "0" * 64
    r = cli("run", "-o", str(DIGITS), "--exp.dir", str(tmp_path / "exp"), "--runtime.name", "docker",
            "--runtime.docker.image", gone, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr == (f"error: runtime.docker.image: image {gone} is not on this Docker engine; docker load it "
                        f"from a machine that has it (docker save), or rebuild it by running the options with "
                        f"runtime.docker.image unset (a rebuilt image gets a new id)\n")


def test_leftover_containers_are_removed_and_a_running_one_refused(engine, tmp_path):
    exp = tmp_path / "exp"
    labels = {"bootstrap-repro": "1", "bootstrap-repro.exp": str(exp)}
    stale = engine.client.containers.create(engine.image.id, ["true"], labels=labels)  # state 'created'
    running = engine.client.containers.run(engine.image.id, ["sleep", "60"], labels=labels, detach=True, init=True)
    try:
        r = cli("run", "-o", str(DIGITS), "--exp.dir", str(exp), "--engine.nb_epochs", "1", *engine.args, cwd=REPO)
        assert r.returncode == 2
        assert r.stderr == (f"error: exp.dir: container {running.short_id} is still running {exp}; wait for it or "
                            f"stop it (docker stop {running.short_id})\n")
    finally:
        running.remove(force=True)
    r = cli("run", "-o", str(DIGITS), "--exp.dir", str(exp), "--engine.nb_epochs", "1", *engine.args, cwd=REPO)
    assert r.returncode == 0, r.stderr
    with pytest.raises(Exception, match="404|No such container"):
        stale.reload()


def test_rerun_of_a_docker_experiment_uses_the_recorded_image(engine, tmp_path):
    exp = tmp_path / "exp"
    r = cli("run", "-o", str(DIGITS), "--engine.nb_epochs", "1", "--exp.dir", str(exp), *engine.args, cwd=REPO)
    assert r.returncode == 0, r.stderr
    image_id = json.loads((exp / "repro" / "record.json").read_text())["runtime"]["image"]["id"]
    r = cli("rerun", str(exp), "--verify", cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert started_image(r.stderr) == image_id
    rerun_record = json.loads((tmp_path / "exp-rerun-1" / "repro" / "record.json").read_text())
    assert rerun_record["runtime"]["image"]["id"] == image_id

    # the recorded image is gone: refused, in one line, with nothing made
    record_file = exp / "repro" / "record.json"
    record = json.loads(record_file.read_text())
    gone = "sha256:" + "f" * 64
    record["runtime"]["image"]["id"] = gone
    record_file.write_text(json.dumps(record))
    r = cli("rerun", str(exp), cwd=REPO)
    assert r.returncode == 2
    [error] = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # one line, no second
    assert error.startswith(f"error: runtime.docker.image: image {gone} is not on this Docker engine; docker load it")
    assert not (tmp_path / "exp-rerun-2").exists()


# --------------------------------------------------------------------------- sweeps with trials in containers
def docker_sweep(root: Path, engine, **sweep: object) -> Path:
    """A 3-trial sweep over TINY whose trials run in Docker: two trials with lr 0.1 learn, lr 1e-12 cannot and is pruned.

    Deterministic with 2 workers: trials 0 and 1 run side by side with the same lr and seed, so they report
    the same values and the median pruner cannot prune either, whichever completes first (equal is not
    worse).  Trial 2 starts only when one of them has completed, so the pruner has its startup trial.
    """
    return write_sweep(root, options={"engine": {"nb_epochs": 3}, "runtime": {"name": "docker"}},
                       sweep={"n_trials": 3, "jobs": 2, "pruner": {"name": "median", "n_warmup_steps": 0,
                                                                   "n_startup_trials": 1}, **sweep},
                       params={"optimizer.lr": {"type": "categorical", "choices": [0.1, 1e-12]}},
                       enqueue=[{"optimizer.lr": lr} for lr in (0.1, 0.1, 1e-12)])


def check_docker_trials(sweep_dir: Path, trials: list, engine, stdout: str) -> None:
    """Trials 0 and 1 complete, trial 2 pruned after its first epoch, every one of them run in the image."""
    by_number = {t.number: t for t in trials}
    assert {n: t.state.name for n, t in by_number.items()} == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED"}, stdout
    for n, t in by_number.items():
        d = sweep_dir / "trials" / f"{n:04d}"
        record = json.loads((d / "repro" / "record.json").read_text())
        assert record["runtime"]["kind"] == "docker" and record["runtime"]["image"]["id"] == engine.image.id
        assert json.loads((d / "sweep_trial.json").read_text())["state"] == t.state.name  # written in the container
        assert owners(d) == {(os.getuid(), os.getgid())}
        assert list(t.intermediate_values) == ([0] if n == 2 else [0, 1, 2])  # reported from inside
    assert by_number[0].intermediate_values == by_number[1].intermediate_values  # why neither can be pruned
    logs = json.loads((sweep_dir / "trials" / "0002" / "logs.json").read_text())
    assert logs["eval_epoch.epoch"] == [0]  # stopped by the pruner, logs intact
    assert (sweep_dir / "view.html").is_file()
    assert "trials run in Docker image" in stdout and engine.image.id in stdout
    assert "2 complete, 1 pruned, 0 failed (n_trials 3)" in stdout


def test_sweep_trials_in_docker_report_to_the_journal_and_are_pruned(engine, tmp_path):
    f = docker_sweep(tmp_path, engine)
    r = cli("sweep", str(f), *engine.args, cwd=tmp_path, env={"BOOTSTRAP_REPRO_NO_CACHE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    sweep_dir = tmp_path / "sweep"
    check_docker_trials(sweep_dir, study_trials(sweep_dir), engine, r.stdout)
    options = yaml.safe_load((sweep_dir / "trials" / "0000" / "options.yaml").read_text())
    assert options["runtime"]["docker"]["mounts"] == [f"{sweep_dir}:rw"]  # the journal's dir, read-write
    assert options["runtime"]["docker"]["network"] is None


@pytest.fixture(scope="module")
def postgres_url():
    from postgres import database_url

    yield from database_url()


def test_sweep_trials_in_docker_reach_a_postgres_study(engine, tmp_path, postgres_url):
    f = docker_sweep(tmp_path, engine, storage=postgres_url)
    r = cli("sweep", str(f), *engine.args, cwd=tmp_path, env={"BOOTSTRAP_REPRO_NO_CACHE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    sweep_dir = tmp_path / "sweep"
    check_docker_trials(sweep_dir, study_trials(sweep_dir, postgres_url), engine, r.stdout)
    options = yaml.safe_load((sweep_dir / "trials" / "0001" / "options.yaml").read_text())
    assert options["runtime"]["docker"]["network"] == "host"  # 127.0.0.1 is the host's inside the container
    password = postgres_url.split(":")[2].split("@")[0]
    for path in sweep_dir.rglob("*"):  # the URL reached the trials through the environment only
        if path.is_file() and path.suffix in (".json", ".yaml", ".txt"):
            assert password not in path.read_text(errors="replace"), path


def test_a_leftover_container_removed_while_listed_is_not_an_error(engine, tmp_path, monkeypatch):
    """The start of a Docker run cleans this exp dir's stopped containers; one that its old client's watcher
    removes between the listing and the inspection (kill -9, then an immediate resume) is simply gone."""
    from bootstrap_repro.runtimes._docker import EXP_LABEL, LABEL, _clean_leftovers

    exp = tmp_path / "exp"
    container = engine.client.containers.create(engine.image.id, ["true"], labels={LABEL: "1", EXP_LABEL: str(exp)})
    api, real = engine.client.api, engine.client.api.inspect_container

    def removed_first(cid, *a, **k):  # the watcher wins the race: the container goes before it is inspected
        if cid == container.id:
            engine.client.api.remove_container(cid, force=True)
        return real(cid, *a, **k)

    monkeypatch.setattr(api, "inspect_container", removed_first)
    _clean_leftovers(engine.client, exp)  # no docker.errors.NotFound
    monkeypatch.setattr(api, "inspect_container", real)
    assert not containers_under(engine.client, tmp_path)
