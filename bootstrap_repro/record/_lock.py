"""fcntl locks: one per experiment dir (whole run), one per cache key (publish / read)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bootstrap_repro.errors import UnsafePathError
from bootstrap_repro.record._errors import RunLockedError

__all__ = ["LOCK_NAME", "exp_dir_lock", "file_lock", "open_no_follow"]

#: The lock file of an experiment dir (it holds the pid of the running process).
LOCK_NAME = ".lock"


@contextlib.contextmanager
def exp_dir_lock(exp_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``exp_dir`` for the whole run; a second holder is refused at once."""
    fd = open_no_follow(Path(exp_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT)
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


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink (an experiment dir you did not write may hold one) in one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{path}: is a symlink; bootstrap-repro writes its own files there and follows no link "
                f"(remove it: rm {path})"
            ) from None
        raise


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
