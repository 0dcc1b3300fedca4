"""One background thread that runs the jobs handed to it, and lingers between them.

The checkpoint commits (:class:`~bootstrap_repro.engines.Checkpointer`) and the ``logs.json``
journal's fdatasync (:class:`~bootstrap_repro.logger.Logger`) run off the training thread.  Both
want the same thing: a hand-over that starts no thread per job (a thread start waits to be
scheduled, milliseconds on a busy machine), a wait for what was handed over, and the job's error
raised on the waiting thread.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["LingeringWorker"]


class LingeringWorker:
    """Runs the jobs :meth:`submit` hands over, one at a time, on a daemon thread.

    The thread waits :attr:`linger` idle seconds for the next job, then ends; the next
    :meth:`submit` starts a new one.  Only the latest job waiting to start is kept: a job handed
    over while another still waits replaces it, and counts as done for both (a commit of newer
    states, an fdatasync that covers the earlier lines too).  The first error a job raises is kept
    and raised by the next :meth:`wait`.  Jobs handed over are finished before the interpreter
    exits (atexit).
    """

    def __init__(self, name: str, linger: float = 30.0) -> None:
        self.name = name
        self.linger = linger
        self._cond = threading.Condition(threading.Lock())
        self._job: Callable[[], None] | None = None  # handed over, not started yet
        self._submitted = 0  # jobs handed over
        self._done = 0  # jobs done (or replaced by a later one that is done)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        _WORKERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: no thread (it did not survive the fork), a fresh lock, none of the parent's jobs."""
        self._cond = threading.Condition(threading.Lock())
        self._job, self._thread, self._submitted, self._done = None, None, 0, 0

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the thread (started when none lingers), after the one running, if any."""
        with self._cond:
            self._job = job
            self._submitted += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify_all()

    def join(self) -> None:
        """Block until every job handed over so far is done (or the thread is gone).

        Raises RuntimeError on the worker's own thread (a job waiting for itself would never end).
        """
        if self._thread is threading.current_thread():
            raise RuntimeError(f"{self.name}: a job waited for its own worker (it would wait forever)")
        with self._cond:
            target = self._submitted
            while self._done < target and self._thread is not None and self._thread.is_alive():
                self._cond.wait(1.0)

    def wait(self) -> None:
        """:meth:`join`, then raise the error a job raised (once)."""
        self.join()
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the error a job raised since the last call, if any."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def idle(self) -> bool:
        """No job waiting or running."""
        with self._cond:
            return self._done >= self._submitted

    def _loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while self._job is None:
                    if not cond.wait(self.linger) and self._job is None:
                        self._thread = None  # under the lock: the next submit starts a new thread
                        return
                job, self._job, covered = self._job, None, self._submitted
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - raised on the waiting thread by wait()
                if self._error is None:
                    self._error = exc
            finally:
                with cond:
                    self._done = max(self._done, covered)
                    cond.notify_all()


_WORKERS: weakref.WeakSet[LingeringWorker] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for worker in list(_WORKERS):
        worker._after_fork()


def _finish_all() -> None:
    """At exit: finish the jobs handed over (a checkpoint commit, a journal fdatasync); the threads are daemons."""
    for worker in list(_WORKERS):
        worker.join()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_finish_all)
