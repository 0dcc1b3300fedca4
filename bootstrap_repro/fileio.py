"""Crash-safe file writing.

Every file the platform writes goes through here: data is written to a
temporary file in the same directory, flushed and fsynced, then moved over the
target with :func:`os.replace`, so a reader (or a ``kill -9``) sees either the
old file or the new one, never a torn one.

:func:`commit_group` extends this to a *set* of files (the three checkpoint
files of one save) with a small journal; :func:`recover_groups` rolls an
interrupted commit forward or back the next time the directory is used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "commit_group",
    "recover_groups",
    "JOURNAL_SUFFIX",
]

PathLike = str | os.PathLike[str]
JOURNAL_SUFFIX = ".commit.json"
_STAGED_SUFFIX = ".staged"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform / filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _write_temp(path: Path, writer: Callable[[IO[bytes]], None], fsync: bool) -> Path:
    """Write through ``writer`` into a fresh temporary sibling of ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(
    path: PathLike, writer: Callable[[IO[bytes]], None], *, fsync: bool = True, fsync_dir: bool | None = None
) -> None:
    """Write ``path`` atomically: ``writer`` receives a binary file object.

    ``fsync`` makes the data durable before the rename; ``fsync_dir`` (default:
    ``fsync``) also makes the rename itself durable, which a later fsync of the
    same directory does as well.
    """
    path = Path(path)
    tmp = _write_temp(path, writer, fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync if fsync_dir is None else fsync_dir:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = True, fsync_dir: bool | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data), fsync=fsync, fsync_dir=fsync_dir)


def atomic_write_text(path: PathLike, text: str, *, fsync: bool = True, fsync_dir: bool | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, fsync_dir=fsync_dir)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = None, fsync: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n", fsync=fsync)


def commit_group(
    directory: PathLike,
    name: str,
    writers: Mapping[str, Callable[[IO[bytes]], None]],
    links: Mapping[str, str] | None = None,
) -> None:
    """Replace several files of ``directory`` as one unit.

    ``writers`` maps file names to writer callbacks.  All files are first
    staged (written and fsynced under a temporary name), then a journal
    ``<name>.commit.json`` listing them is written atomically, then each staged
    file is renamed over its target and the journal is removed.  A crash
    before the journal exists leaves the old files; a crash after it is rolled
    forward by :func:`recover_groups`.

    ``links`` maps extra file names to a name of ``writers``: they get the
    same content as a hard link (a copy where links are not supported), so
    ``ckpt_best_*`` costs no second serialisation.
    """
    directory = Path(directory)
    staged: dict[str, str] = {}
    try:
        for fname, writer in writers.items():
            target = directory / fname
            tmp = _write_temp(target, writer, fsync=True)
            final_tmp = target.with_name(target.name + _STAGED_SUFFIX)
            os.replace(tmp, final_tmp)
            staged[fname] = final_tmp.name
        for fname, source in (links or {}).items():
            link_tmp = directory / (fname + _STAGED_SUFFIX)
            link_tmp.unlink(missing_ok=True)
            try:
                os.link(directory / staged[source], link_tmp)
            except OSError:
                shutil.copyfile(directory / staged[source], link_tmp)
            staged[fname] = link_tmp.name
    except BaseException:
        for tmp_name in staged.values():
            (directory / tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    journal = directory / (name + JOURNAL_SUFFIX)
    atomic_write_json(journal, {"files": staged})
    _roll_forward(directory, staged)
    journal.unlink()
    _fsync_dir(directory)


def _plain_name(name: object) -> bool:
    """A single file name of the directory: no separator, not ``.``/``..``, no NUL."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _roll_forward(directory: Path, staged: Mapping[str, str]) -> None:
    """Rename the staged files of a journal into place; entries naming anything but a staged file of this
    directory (a crafted journal: ``../``, absolute paths, symlinks) are ignored."""
    if not isinstance(staged, Mapping):
        return
    for fname, tmp_name in staged.items():
        if not (_plain_name(fname) and _plain_name(tmp_name) and str(tmp_name).endswith(_STAGED_SUFFIX)):
            continue
        tmp = directory / tmp_name
        if tmp.is_file() and not tmp.is_symlink() and not (directory / fname).is_symlink():
            os.replace(tmp, directory / fname)


def recover_groups(directory: PathLike) -> list[str]:
    """Finish or undo interrupted :func:`commit_group` calls in ``directory``.

    Returns the names of the groups that were rolled forward.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    recovered = []
    for journal in sorted(directory.glob("*" + JOURNAL_SUFFIX)):
        if journal.is_symlink():  # not ours: a journal is a file this code wrote
            continue
        try:
            staged = json.loads(journal.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            # The journal is written atomically, so an unreadable one was never
            # committed: treat it as absent.
            staged = {}
        _roll_forward(directory, staged)
        journal.unlink(missing_ok=True)
        recovered.append(journal.name[: -len(JOURNAL_SUFFIX)])
    # Staged files without a journal belong to a commit that never happened.
    for leftover in directory.glob("*" + _STAGED_SUFFIX):
        leftover.unlink(missing_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    if recovered:
        _fsync_dir(directory)
    return recovered
