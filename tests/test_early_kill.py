"""A run killed in its first moments leaves a dir that one command trains again; no two messages point at each other.

Every state ``kill -9`` can leave before the first checkpoint (nothing yet, ``.lock`` only, part of
``repro/``, a record but no options, options but no checkpoint, a first checkpoint cut before its
journal, ``logs.txt`` only) is trained from the start by ``run ... --exp.resume last``; a new run
there and the documented ``-o DIR/options.yaml --exp.resume last`` either work or are refused in
one line that names ``rm -r DIR``.  And a run killed while its DataLoader workers linger (stopped)
is resumed at once: the workers do not hold the dir's lock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, TINY, cli, write_options

from bootstrap_repro.cli import main
from bootstrap_repro.options import merge
from bootstrap_repro.record import read_record

pytestmark = pytest.mark.slow


def _options(tmp: Path, exp: Path) -> Path:
    return write_options(tmp / "options.yaml", merge(TINY, {"exp": {"dir": str(exp)}, "engine": {"nb_epochs": 3}}))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``(options file, a completed run of it)``: the reference and the source of a real record."""
    tmp = tmp_path_factory.mktemp("early")
    f = _options(tmp, tmp / "ref")
    assert main(["run", "--no-cache", "-o", str(f)]) == 0
    return f, tmp / "ref"


def _record(ref: Path, d: Path, *, cut: bool = False) -> None:
    shutil.copytree(ref / "repro", d / "repro")
    data = read_record(ref)
    data.update(status="RUNNING", ended=None, exp_dir=str(d.resolve()))
    (d / "repro" / "record.json").write_text(json.dumps(data)[: 40 if cut else None])


def _saved_options(ref: Path, d: Path) -> None:
    (d / "options.yaml").write_text((ref / "options.yaml").read_text().replace(str(ref), str(d)))
    (d / "logs.txt").write_text("[I ...] Launching training procedures\n")
    (d / "logs.json").write_text('{"train_epoch.loss": [99.0]}')  # a first flush the kill left


def _cut_first_checkpoint(ref: Path, d: Path) -> None:
    for part in ("engine", "model", "optimizer"):  # staged, the journal not written yet
        shutil.copy(ref / f"ckpt_last_{part}.pth.tar", d / f"ckpt_last_{part}.pth.tar.staged")


STATES: dict[str, Callable[[Path, Path], None]] = {
    "empty": lambda ref, d: None,
    "lock only": lambda ref, d: (d / ".lock").write_text("12345\n"),
    "part of repro/": lambda ref, d: ((d / ".lock").touch(), (d / "repro").mkdir(),
                                      (d / "repro" / "packages.txt").write_text("torch==2\n")),
    "record, no options": lambda ref, d: ((d / ".lock").touch(), _record(ref, d)),
    "record cut": lambda ref, d: ((d / ".lock").touch(), _record(ref, d, cut=True)),
    "options, no checkpoint": lambda ref, d: ((d / ".lock").touch(), _record(ref, d), _saved_options(ref, d)),
    "first checkpoint cut": lambda ref, d: ((d / ".lock").touch(), _record(ref, d), _saved_options(ref, d),
                                            _cut_first_checkpoint(ref, d)),
    "logs.txt only": lambda ref, d: (d / "logs.txt").write_text("[I ...] Launching training procedures\n"),
}


def _attempt(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    if code != 0:
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return code, err


def assert_one_way_out(capsys, killed: Path, f: Path, ref: Path) -> None:
    """On copies of ``killed``: a new run, the resume with the user's file and the documented resume."""
    checkpointed = any(killed.glob("ckpt_*.pth.tar")) or (killed / "ckpt.commit.json").exists()  # journal: it counts

    def copy(name: str) -> Path:
        d = killed.with_name(f"{killed.name}-{name}")
        shutil.copytree(killed, d, symlinks=True)
        return d

    d = copy("new")
    code, err = _attempt(capsys, ["run", "--no-cache", "-o", str(f), "--exp.dir", str(d)])
    if code:
        assert "--exp.resume last" in err and (checkpointed or f"rm -r {d}" in err), err

    d = copy("resume")  # the way out that always works
    code, err = _attempt(capsys, ["run", "--no-cache", "-o", str(f), "--exp.dir", str(d), "--exp.resume", "last"])
    assert code == 0, err
    assert json.loads((d / "logs.json").read_text()) == json.loads((ref / "logs.json").read_text())
    rec = read_record(d)
    assert rec["status"] == "COMPLETED"
    if not checkpointed:
        assert "training from the start" in (d / "logs.txt").read_text()
        assert rec["resumes"] == [] and rec["started_from_checkpoint"] is None  # a run like a new one

    d = copy("documented")
    code, err = _attempt(capsys, ["run", "--no-cache", "-o", str(d / "options.yaml"), "--exp.dir", str(d),
                                  "--exp.resume", "last"])
    if code:
        assert not (d / "options.yaml").exists() and f"rm -r {d}" in err and "--exp.resume last" in err, err


@pytest.mark.parametrize("state", list(STATES))
def test_each_state_an_early_kill_leaves_has_a_way_out(capsys, made, tmp_path, state):
    f, ref = made
    killed = tmp_path / "killed"
    killed.mkdir()
    STATES[state](ref, killed)
    assert_one_way_out(capsys, killed, f, ref)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("stage", ["exp dir", ".lock", "repro", "options.yaml", "logs.json", "0.3s after logs.txt"])
def test_a_real_kill_in_the_first_moments_has_a_way_out(capsys, made, tmp_path, stage):
    f, ref = made
    killed = tmp_path / "killed"
    marker = {"exp dir": killed, ".lock": killed / ".lock", "repro": killed / "repro",
              "options.yaml": killed / "options.yaml", "logs.json": killed / "logs.json"}.get(stage, killed / "logs.txt")
    proc = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "run", "--no-cache", "-o", str(f),
                             "--exp.dir", str(killed)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never reached the stage"
            time.sleep(0.001)
        if stage.startswith("0.3s"):
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    # killed before it ended (the timed kill may come after a fast run's end)
    assert proc.returncode == -signal.SIGKILL or (stage.startswith("0.3s") and proc.returncode == 0), err
    assert_one_way_out(capsys, killed, f, ref)


# A dataset plugin that, at epoch 1's second batch, stops its DataLoader workers (so they linger
# after their run, as a worker blocked in I/O does), writes their pids, and kills its own process.
STOP_WORKERS_AND_DIE = textwrap.dedent("""
    import os, signal
    from pathlib import Path
    from bootstrap_repro.datasets import Synthetic

    def children():
        me, out = str(os.getpid()), []
        for d in os.listdir('/proc'):
            try:
                stat = Path(f'/proc/{d}/stat').read_text() if d.isdigit() else ''
            except OSError:
                continue
            if stat and stat.rpartition(')')[2].split()[1] == me:
                out.append(int(d))
        return out

    def factory(engine):
        opt = engine.options['dataset']
        kw = dict(nb_items=opt['nb_items'], nb_classes=opt['nb_classes'], dim=opt['dim'],
                  batch_size=opt['batch_size'], nb_threads=opt['nb_threads'], seed=engine.seed)
        pids = os.environ.get('WORKERS_FILE')

        def die(e):
            if pids and e.epoch == 1 and e.state.batch == 1:
                workers = children()
                for pid in workers:
                    os.kill(pid, signal.SIGSTOP)
                Path(pids).write_text(' '.join(map(str, workers)))
                os.kill(os.getpid(), signal.SIGKILL)
        engine.register_hook('train_on_start_batch', die)
        return {'train': Synthetic('train', **kw), 'eval': Synthetic('val', **kw)}
""")


def test_kill9_with_lingering_dataloader_workers_then_resume(tmp_path):
    (tmp_path / "stop_plugin.py").write_text(STOP_WORKERS_AND_DIE)
    exp = tmp_path / "exp"
    f = write_options(tmp_path / "options.yaml", merge(TINY, {
        "exp": {"dir": str(exp)}, "engine": {"nb_epochs": 3},
        "dataset": {"import": "stop_plugin", "nb_items": 64, "nb_threads": 2}}))
    pids, log = tmp_path / "workers.txt", tmp_path / "stderr.txt"
    with log.open("w") as err:  # not a pipe: the stopped workers keep theirs open, a pipe would never end
        code = subprocess.run([sys.executable, "-m", "bootstrap_repro", "run", "--no-cache", "-o", str(f)], check=False,
                              env={**_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "WORKERS_FILE": str(pids)},
                              stdout=subprocess.DEVNULL, stderr=err, timeout=300).returncode
    workers = [int(p) for p in pids.read_text().split()] if pids.exists() else []
    try:
        assert code == -signal.SIGKILL, log.read_text()
        assert len(workers) >= 2, "the DataLoader workers were running"
        for pid in workers:  # still there, stopped, with the lock file open
            assert Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
        r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", env={"PYTHONPATH": str(tmp_path)})
        assert r.returncode == 0, r.stderr
        assert json.loads((exp / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
