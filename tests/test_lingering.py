"""The background thread shared by checkpoint commits and the logs journal's fdatasync."""

from __future__ import annotations

import threading
import time

import pytest

from bootstrap_repro._lingering import LingeringWorker


def test_jobs_run_in_order_on_one_thread_that_lingers_then_ends():
    worker = LingeringWorker("test-worker", linger=0.3)
    seen: list[tuple[int, int]] = []
    for i in range(3):
        worker.submit(lambda i=i: seen.append((i, threading.get_ident())))
        worker.wait()
    assert [i for i, _ in seen] == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 1  # no thread start per job
    assert seen[0][1] != threading.get_ident()
    deadline = time.monotonic() + 5
    while worker._thread is not None and time.monotonic() < deadline:  # idle past linger: it ends
        time.sleep(0.05)
    assert worker._thread is None
    worker.submit(lambda: seen.append((3, threading.get_ident())))  # a new thread for the next job
    worker.wait()
    assert seen[-1][0] == 3 and worker.idle


def test_a_job_handed_over_while_another_waits_replaces_it():
    worker = LingeringWorker("test-worker")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        ran.append("slow")

    worker.submit(slow)
    assert started.wait(5)
    worker.submit(lambda: ran.append("replaced"))
    worker.submit(lambda: ran.append("latest"))  # covers the one it replaced
    assert not worker.idle
    release.set()
    worker.wait()
    assert ran == ["slow", "latest"] and worker.idle


def test_wait_raises_the_jobs_error_once_and_the_worker_goes_on():
    worker = LingeringWorker("test-worker")
    worker.submit(lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        worker.wait()
    worker.wait()  # raised once
    done: list[int] = []
    worker.submit(lambda: done.append(1))
    worker.wait()
    assert done == [1]


def test_join_returns_at_once_with_nothing_handed_over():
    worker = LingeringWorker("test-worker")
    t0 = time.monotonic()
    worker.wait()
    assert time.monotonic() - t0 < 0.5 and worker.idle and worker._thread is None


def test_a_job_that_waits_for_its_own_worker_fails_instead_of_hanging():
    worker = LingeringWorker("test-worker")
    worker.submit(worker.wait)
    with pytest.raises(RuntimeError, match="waited for its own worker"):
        worker.wait()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_own_jobs():
    """A worker whose thread started before a fork: in the child there is no thread, and a submit starts one."""
    import os

    worker = LingeringWorker("test-worker", linger=30)
    worker.submit(lambda: None)
    worker.wait()
    assert worker._thread is not None and worker._thread.is_alive()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether the job ran, then leave at once
        ran: list[int] = []
        try:
            worker.submit(lambda: ran.append(1))
            worker.wait()
        finally:
            os.write(write, b"ran" if ran else b"lost")
            os._exit(0)
    os.close(write)
    got = os.read(read, 16)
    os.waitpid(pid, 0)
    assert got == b"ran"


def test_a_job_handed_over_is_finished_before_the_interpreter_exits(tmp_path):
    """A checkpoint commit or a journal fdatasync in flight when the script ends is not lost (atexit)."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "done"
    script = textwrap.dedent(f"""
        import time
        from bootstrap_repro._lingering import LingeringWorker
        worker = LingeringWorker("test-worker")
        worker.submit(lambda: (time.sleep(0.5), open({str(out)!r}, "w").write("ok")))
    """)  # the script ends at once: only the exit hook waits for the job
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert out.read_text() == "ok"
