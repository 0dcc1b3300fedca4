"""Locks: one per experiment dir (the whole run), one per cache key (publish / read).

The experiment dir's lock is a POSIX record lock (``lockf``), not an ``flock``: an
``flock`` belongs to the open file description, which a forked child (a DataLoader
worker) shares, so a worker left stopped after ``kill -9`` of its run kept the dir
locked.  A record lock belongs to the process that took it: forked children never
hold it, and the kernel drops it when that process ends, however it ends.  (Linux's
open-file-description locks, ``F_OFD_SETLK``, are shared with forked children like
``flock``: not those either.)

The price of a record lock: a process loses it when it closes *any* descriptor of
the file.  Nothing in bootstrap-repro opens ``.lock`` but :func:`exp_dir_lock` and
:func:`exp_dir_in_use`, and both leave a dir this process holds alone: a second
:func:`exp_dir_lock` of it is refused before the file is opened.

Cache locks stay ``flock``s (threads of one process must exclude each other there,
which record locks do not do); a forked child closes its copies at once, so it never
keeps one alive after its parent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from bootstrap_repro.errors import OptionsError, UnsafePathError
from bootstrap_repro.record._errors import RunLockedError

__all__ = ["LOCK_NAME", "exp_dir_in_use", "exp_dir_lock", "file_lock", "open_no_follow"]

#: The lock file of an experiment dir (it holds the pid of the running process).
LOCK_NAME = ".lock"

_HELD: set[tuple[int, str]] = set()  # (pid, real exp dir) of the experiment dirs this process has locked
_HELD_GUARD = threading.Lock()
_SAME_PROCESS = "exp.dir: {exp_dir} is being used by another run of this process; wait for it or choose another --exp.dir"


@contextlib.contextmanager
def exp_dir_lock(exp_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``exp_dir`` for the whole run; a second holder is refused at once.

    Raises :class:`RunLockedError` naming the process that holds it (pid, command, and
    what to do when it is stopped).  Forked children do not hold the lock.
    """
    exp_dir = Path(exp_dir)
    key = (os.getpid(), os.path.realpath(exp_dir))
    with _HELD_GUARD:
        if key in _HELD:  # opening and closing .lock here would release this process's own lock
            raise RunLockedError(_SAME_PROCESS.format(exp_dir=exp_dir))
        try:
            fd = open_no_follow(exp_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        except PermissionError as exc:
            raise OptionsError(f"exp.dir: cannot write in {exp_dir} ({exc.strerror}); "
                               f"choose a --exp.dir in a writable directory") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd) if exc.errno in (errno.EACCES, errno.EAGAIN) else None
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise RunLockedError(_refusal(exp_dir, holder)) from None
        _HELD.add(key)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with _HELD_GUARD:  # closed first: a thread locking the dir meanwhile would lose its lock to this close
            os.close(fd)  # in a forked child that unwinds this block: its copy, which held nothing
            _HELD.discard(key)


def _lock_holder(fd: int) -> int | None:
    """The pid of the process holding a record lock on the file of ``fd`` (None: unknown or free).

    Asks the kernel (``F_GETLK``, Linux) and falls back to the pid the holder wrote in the file.
    """
    asked = _getlk(fd)
    if asked is not None:
        return asked[1] if asked[0] else None
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def exp_dir_in_use(exp_dir: Path) -> str | None:
    """The refusal :func:`exp_dir_lock` would give now (another process runs in ``exp_dir``), else None.

    Takes no lock and creates nothing; None where the kernel cannot be asked (not Linux).
    """
    exp_dir = Path(exp_dir)
    with _HELD_GUARD:  # no other thread of this process is between its open and its lock meanwhile
        if (os.getpid(), os.path.realpath(exp_dir)) in _HELD:
            return _SAME_PROCESS.format(exp_dir=exp_dir)
        try:
            fd = os.open(exp_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None  # no lock file (nobody runs there), or a symlink, refused when the run locks
        try:
            asked = _getlk(fd)
        finally:
            os.close(fd)
    return _refusal(exp_dir, asked[1]) if asked is not None and asked[0] else None


def _getlk(fd: int) -> tuple[bool, int | None] | None:
    """``(locked, holder pid)`` from the kernel (``F_GETLK``); None where it cannot be asked (not 64-bit Linux)."""
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    layout = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid
    try:
        out = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError:
        return None
    kind, _, _, _, pid = struct.unpack(layout, out)
    # pid 0: a holder this pid namespace cannot see (a container, another machine); the file's pid is not ours
    return kind != fcntl.F_UNLCK, (int(pid) if pid > 0 else None)


def _refusal(exp_dir: Path, pid: int | None) -> str:
    """The one-line refusal: who holds the dir and what to do."""
    base = f"exp.dir: {exp_dir} is being used by another running process"
    wait = "wait for it or choose another --exp.dir"
    if pid is None:
        return f"{base}; {wait}"
    proc = _proc_info(pid)
    if proc is None:  # ended meanwhile, or in another pid namespace / on another machine
        return f"{base} (pid {pid}); {wait}"
    state, command = proc
    if state in ("T", "t"):
        return (f"{base} (pid {pid}, stopped: {command}); continue it (kill -CONT {pid}) and wait, "
                f"or end it (kill -9 {pid}) and resume with --exp.resume last")
    return f"{base} (pid {pid}: {command}); {wait}"


def _proc_info(pid: int) -> tuple[str, str] | None:
    """``(state letter, command line)`` of ``pid`` from /proc; None when it cannot be seen."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    state = stat.rpartition(")")[2].split()[0] if ")" in stat else "?"
    command = " ".join(raw.decode("utf-8", "replace").replace("\0", " ").split()) or "?"  # one line
    return state, command if len(command) <= 120 else command[:117] + "..."


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


_FLOCKS: dict[object, int] = {}  # the descriptors of the file_locks this process holds, by block


def _close_inherited_flocks() -> None:
    """In a forked child: close the copies of the parent's flocks, so the child never keeps one alive."""
    for fd in _FLOCKS.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _FLOCKS.clear()


os.register_at_fork(after_in_child=_close_inherited_flocks)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an flock on ``path`` (created if needed); yields False when ``blocking=False`` and it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    token = object()
    _FLOCKS[token] = fd
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        if _FLOCKS.pop(token, None) is not None:  # absent in a forked child: closed there already
            os.close(fd)
