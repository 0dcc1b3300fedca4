"""The record of a run: written when the dir is created, closed when the run ends; no secrets; locking."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli
from repro_helpers import env_for, git, make_dirty, make_repo

from bootstrap_repro.cli import main
from bootstrap_repro.options import Options
from bootstrap_repro.record import ResultCache, read_record
from bootstrap_repro.run import run


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_record_is_written_at_start_and_closed_at_end(tiny_options):
    opt = tiny_options()
    exp = Path(opt["exp.dir"])
    seen = {}

    def setup(engine):
        engine.register_hook("train_on_start", lambda: seen.update(read_record(exp)))

    result = run(opt, setup=setup, handle_signals=False)
    assert result.status == "COMPLETED"
    assert seen["status"] == "RUNNING" and seen["ended"] is None and seen["pid"] == os.getpid()
    rec = read_record(exp)
    assert rec["status"] == "COMPLETED" and rec["ended"] >= rec["started"] == seen["started"]
    assert rec["schema_version"] == 1 and rec["seed"] == 7 and rec["mode"] == "train"
    assert rec["code"]["git"] is False  # tmp_path holds no repo
    assert rec["environment"]["torch"]["version"] and rec["runtime"]["kind"] == "local"
    engine = {k: v for k, v in rec["runtime"]["engine"].items() if k != "cublas_workspace_config"}
    assert engine == {"device": "cpu", "amp": "none", "compile": False, "world_size": 1,
                      "deterministic": False, "cudnn_benchmark": False}  # which mode ran
    assert rec["cache_key"] == result.record.key and len(rec["cache_key"]) == 64
    assert (exp / "repro" / "packages.txt").read_text().count("==") == rec["environment"]["packages"]["count"]


@pytest.mark.parametrize("how, status, error", [
    ("raise", "FAILED", "RuntimeError: boom"),
    ("interrupt", "INTERRUPTED", "StopRun: SIGTERM"),
])
def test_failed_and_interrupted_runs_are_recorded(tiny_options, how, status, error):
    opt = tiny_options()

    def hook(engine):
        if how == "raise":
            raise RuntimeError("boom")
        engine.interrupt("SIGTERM")

    with open(os.devnull, "w") as quiet:
        result = run(opt, setup=lambda e: e.register_hook("train_on_start_batch", hook), handle_signals=False,
                     stream=quiet)
    assert result.status == status
    rec = read_record(opt["exp.dir"])
    assert rec["status"] == status and rec["error"] == error and rec["ended"]


def test_resume_appends_an_entry_and_keeps_the_start(tiny_options, tmp_path):
    opt = tiny_options(argv=["--engine.nb_epochs", "1"])
    assert run(opt, handle_signals=False, cache=True).status == "COMPLETED"
    exp = Path(opt["exp.dir"])
    first = read_record(exp)
    again = Options.load(exp / "options.yaml", ["--exp.resume", "last", "--engine.nb_epochs", "2"])
    result = run(again, handle_signals=False, cache=True)
    assert result.status == "COMPLETED"
    rec = read_record(exp)
    assert rec["started"] == first["started"] and rec["cache_key"] == first["cache_key"]
    assert rec["status"] == "COMPLETED" and rec["ended"] > first["ended"]
    [entry] = rec["resumes"]
    assert entry["resumed_from"] == "last" and entry["previous_status"] == "COMPLETED"
    assert entry["status"] == "COMPLETED" and entry["mode"] == "train"
    assert entry["cache_key"] != first["cache_key"]  # nb_epochs changed: this result is not cached
    assert entry["files"] is None  # same code and environment: nothing saved again
    assert not result.record.cacheable
    # an evaluation of a checkpoint is an entry too, and leaves the experiment's status alone
    ev = Options.load(exp / "options.yaml", ["--exp.resume", "best_loss", "--dataset.train_split", ""])
    assert run(ev, handle_signals=False).status == "COMPLETED"
    rec = read_record(exp)
    assert [e["mode"] for e in rec["resumes"]] == ["train", "eval"] and rec["status"] == "COMPLETED"


def test_an_interrupted_run_resumed_with_the_same_options_enters_the_cache(tiny_options, tmp_path):
    opt = tiny_options()
    exp = Path(opt["exp.dir"])

    def stop_in_epoch_1(engine):
        engine.register_hook("train_on_start_batch", lambda e: e.interrupt("test") if e.epoch == 1 else None)

    with open(os.devnull, "w") as quiet:
        assert run(opt, setup=stop_in_epoch_1, handle_signals=False, stream=quiet, cache=True).status == "INTERRUPTED"
        assert ResultCache().keys() == []
        resumed = run(Options.load(exp / "options.yaml", ["--exp.resume", "last"]), handle_signals=False,
                      stream=quiet, cache=True)
        assert resumed.status == "COMPLETED" and resumed.record.cacheable
        key = read_record(exp)["cache_key"]
        assert ResultCache().keys() == [key] and read_record(exp)["resumes"][0]["previous_status"] == "INTERRUPTED"
        hit = run(Options.load(exp / "options.yaml", ["--exp.dir", str(tmp_path / "again")]), handle_signals=False,
                  stream=quiet, cache=True)
    assert hit.cache_hit is not None and hit.cache_hit.source == str(exp)
    assert (tmp_path / "again" / "logs.json").read_bytes() == (exp / "logs.json").read_bytes()


@pytest.mark.slow
def test_no_secret_reaches_the_experiment_dir(tmp_path):
    secret = "x-AKIA-not-for-records-93f1"
    repo = make_repo(tmp_path / "repo", exp_dir=tmp_path / "exp")
    git(repo, "remote", "add", "origin", f"https://bot:{secret}@example.org/team/project.git")
    make_dirty(repo)
    env = env_for(repo, AWS_SECRET_ACCESS_KEY=secret, OMP_NUM_THREADS="1")
    r = cli("run", "-o", "configs/tiny.yaml", cwd=repo, env=env)
    assert r.returncode == 0, r.stderr
    exp = tmp_path / "exp"
    rec = read_record(exp)
    assert rec["environment"]["env_vars"] == {"OMP_NUM_THREADS": "1"}
    assert rec["code"]["remote"] == "https://example.org/team/project.git"
    checked = []
    for f in files_under(exp / "repro") + [exp / "logs.json", exp / "logs.txt"]:
        data = f.read_bytes()
        if f.suffix == ".gz":
            data = gzip.decompress(data)
        assert secret.encode() not in data and b"AWS_SECRET_ACCESS_KEY" not in data, f
        checked.append(f.name)
    assert {"record.json", "code.diff", "untracked.tar.gz", "packages.txt", "logs.json", "logs.txt"} <= set(checked)


# ----------------------------------------------------------------------------- locking
def _hold(lock: Path) -> subprocess.Popen[str]:
    """Another process that holds the dir's lock (a POSIX record lock, as a run takes it) until it is ended."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    code = (f"import fcntl, os, sys; fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT); "
            f"fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); print('held', flush=True); "
            f"sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    proc.communicate("")  # end of stdin: it exits, the kernel drops its lock


def test_a_second_run_on_a_locked_dir_is_refused(capsys, tiny_file, tmp_path):
    exp = tmp_path / "exp"
    holder = _hold(exp / ".lock")  # another process is running there
    try:
        code = main(["run", "-o", str(tiny_file())])
        err = capsys.readouterr().err
        assert code == 2
        [line] = err.splitlines()  # names the holder and its command line
        assert line.startswith(f"error: exp.dir: {exp} is being used by another running process "
                               f"(pid {holder.pid}: {sys.executable} -c import fcntl")
        assert line.endswith("...); wait for it or choose another --exp.dir")
        assert os.listdir(exp) == [".lock"], "the refused run wrote nothing"
        # the same for a resume of a finished experiment
    finally:
        _release(holder)
    assert main(["run", "-o", str(tiny_file())]) == 0
    before = (exp / "repro" / "record.json").read_bytes()
    holder = _hold(exp / ".lock")
    try:
        capsys.readouterr()
        assert main(["run", "-o", str(exp / "options.yaml"), "--exp.resume", "last"]) == 2
        assert f"is being used by another running process (pid {holder.pid}:" in capsys.readouterr().err
        assert (exp / "repro" / "record.json").read_bytes() == before
    finally:
        _release(holder)


def test_untracked_over_the_bound_fails_before_anything_is_written(capsys, tmp_path):
    repo = make_repo(tmp_path / "repo", exp_dir=tmp_path / "exp", changes={"model": {"network": {"import": ""}}})
    (repo / "weights.bin").write_bytes(b"w" * 3 * 1024 * 1024)
    code = main(["run", "-o", str(repo / "configs" / "tiny.yaml"), "--exp.max_untracked_mb", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [(
        f"error: untracked files of code repo {repo} weigh 3.0 MB, over exp.max_untracked_mb=2: weights.bin (3.0 MB); "
        f"add them to .gitignore or raise the bound (--exp.max_untracked_mb 4)")]
    assert not (tmp_path / "exp").exists()
    assert main(["run", "-o", str(repo / "configs" / "tiny.yaml"), "--exp.max_untracked_mb", "4"]) == 0
    assert read_record(tmp_path / "exp")["code"]["untracked"]["count"] == 1
