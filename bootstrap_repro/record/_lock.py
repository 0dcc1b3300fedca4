"""fcntl locks: one per experiment dir (whole run), one per cache key (publish / read)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bootstrap_repro.record._errors import RunLockedError

__all__ = ["LOCK_NAME", "exp_dir_lock", "file_lock"]

#: The lock file of an experiment dir (it holds the pid of the running process).
LOCK_NAME = ".lock"


@contextlib.contextmanager
def exp_dir_lock(exp_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``exp_dir`` for the whole run; a second holder is refused at once."""
    fd = os.open(Path(exp_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"exp.dir: {exp_dir} is being used by another running process; wait for it or choose another --exp.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an flock on ``path`` (created if needed); yields False when ``blocking=False`` and it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
