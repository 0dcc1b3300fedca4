"""The experiment dir's lock: held by the run's process only, never by its forked children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from bootstrap_repro.record import RunLockedError, exp_dir_in_use, exp_dir_lock
from bootstrap_repro.record._lock import file_lock

# Takes a lock, forks a child that keeps the descriptor (as a DataLoader worker does), then dies by SIGKILL.
FORK_AND_DIE = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from bootstrap_repro.record import exp_dir_lock
    from bootstrap_repro.record._lock import file_lock

    lock = exp_dir_lock(Path(sys.argv[2])) if sys.argv[1] == "exp" else file_lock(Path(sys.argv[2]))
    with lock:
        child = os.fork()
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")

HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bootstrap_repro.record import exp_dir_lock

    with exp_dir_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
""")


def _python(code: str, *args: str, **kw) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True, **kw)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("kind", ["exp", "cache"])
def test_a_forked_child_that_outlives_the_killed_run_holds_no_lock(tmp_path, kind):
    target = tmp_path / "exp" if kind == "exp" else tmp_path / "locks" / "key.lock"
    target.mkdir() if kind == "exp" else None
    proc = _python(FORK_AND_DIE, kind, str(target))
    child = int(proc.stdout.readline())  # type: ignore[union-attr]
    try:
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert _alive(child), "the forked child lives on, with the lock file open"
        if kind == "exp":
            assert exp_dir_in_use(target) is None
            with exp_dir_lock(target):
                assert (target / ".lock").read_text() == f"{os.getpid()}\n"
        else:
            with file_lock(target, blocking=False) as ok:
                assert ok
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_refusal_names_the_holder_and_how_to_end_a_stopped_one(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    proc = _python(HOLD, str(exp), stdin=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == "held\n"  # type: ignore[union-attr]
        command = " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().replace("\0", " ").split())
        assert "-c import sys from pathlib import Path" in command  # the holder's command line, on one line
        command = command if len(command) <= 120 else command[:117] + "..."
        running = (f"exp.dir: {exp} is being used by another running process (pid {proc.pid}: {command}); "
                   f"wait for it or choose another --exp.dir")
        with pytest.raises(RunLockedError) as err, exp_dir_lock(exp):
            pass
        assert str(err.value) == running
        assert exp_dir_in_use(exp) == running
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(RunLockedError) as err, exp_dir_lock(exp):
            pass
        assert str(err.value) == (
            f"exp.dir: {exp} is being used by another running process (pid {proc.pid}, stopped: {command}); "
            f"continue it (kill -CONT {proc.pid}) and wait, or end it (kill -9 {proc.pid}) and resume with "
            f"--exp.resume last")
        os.kill(proc.pid, signal.SIGKILL)  # as the message says
        proc.wait(timeout=60)
        assert exp_dir_in_use(exp) is None
        with exp_dir_lock(exp):
            pass
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_a_second_lock_in_the_same_process_is_refused_and_keeps_the_first(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    probe = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    with exp_dir_lock(exp):
        same = (f"exp.dir: {exp} is being used by another run of this process; "
                f"wait for it or choose another --exp.dir")
        with pytest.raises(RunLockedError, match="another run of this process"), exp_dir_lock(exp):
            pass
        assert exp_dir_in_use(exp) == same
        # a POSIX lock is lost when its process closes any descriptor of the file: neither call did
        assert _python(probe, str(exp / ".lock"), stderr=subprocess.DEVNULL).wait(timeout=60) == 1
    assert exp_dir_in_use(exp) is None
    assert _python(probe, str(exp / ".lock")).wait(timeout=60) == 0
