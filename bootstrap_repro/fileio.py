"""Crash-safe file writing.

Every file the platform writes goes through here: data is written to a
temporary file in the same directory, flushed and fsynced, then moved over the
target with :func:`os.replace`, so a reader (or a ``kill -9``) sees either the
old file or the new one, never a torn one.

:func:`commit_group` extends this to a *set* of files (the three checkpoint
files of one save) with a commit marker; :func:`recover_groups` rolls an
interrupted commit forward or back the next time the directory is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
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
    "settle_group",
    "group_pending",
    "JOURNAL_SUFFIX",
    "MARKER_SUFFIX",
]

PathLike = str | os.PathLike[str]
JOURNAL_SUFFIX = ".commit.json"  # the journal of earlier versions' commits (still recovered)
MARKER_SUFFIX = ".commit"
_MARKER_RE = re.compile(r"(.+)\.([0-9a-f]+)\.commit")
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
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Replace several files of ``directory`` as one unit, in 5 fsyncs (3 files: 3 + 2).

    ``before_commit`` runs once the staged files are durable, before the commit point: what the
    group must never be ahead of (a checkpoint: its logs' sync) is waited for there, while the
    files were being written.

    1. Stage: every file is written under ``<file>.<token>.staged`` (all writes first, then one
       fsync per file, so the disk can merge them); ``links`` maps extra names to a name of
       ``writers``: a hard link (a copy where links are not supported) of its staged file, so
       ``ckpt_best_*`` costs no second serialisation and no fsync.  The directory is fsynced:
       the staged names are durable, and so are the renames of this group's previous commit,
       whose marker is then removed (the fsync deferred from the end of that commit).
    2. Commit point: an empty marker ``<name>.<token>.commit`` is created and the directory
       fsynced.  From here the commit is done: a crash (or a power loss) rolls it forward.
    3. Apply: each staged file is renamed over its target.  The marker stays until the next
       commit or :func:`settle_group` has made these renames durable.

    A crash before the marker exists leaves the old files (the staged ones are deleted by
    :func:`recover_groups`); a crash after it is rolled forward by :func:`recover_groups`.
    """
    directory = Path(directory)
    names = _names(directory)  # one listing for the markers and their staged files
    previous = _markers(directory, name, names)
    if previous:  # a commit that failed between its marker and its renames: finish it first
        for marker in previous:
            _roll_forward_marker(directory, marker, names)
    token = f"{time.time_ns():016x}{os.urandom(3).hex()}"
    staged: dict[str, str] = {}
    files: list[Any] = []
    try:
        for fname, writer in writers.items():
            tmp_name = f"{fname}.{token}{_STAGED_SUFFIX}"
            fd = os.open(directory / tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            staged[fname] = tmp_name
            f = os.fdopen(fd, "wb")
            files.append(f)
            writer(f)
            f.flush()
        for f in files:  # every write was issued before the first fsync
            os.fsync(f.fileno())
            f.close()
        for fname, source in (links or {}).items():
            link_tmp = f"{fname}.{token}{_STAGED_SUFFIX}"
            source_tmp = staged[source]
            staged[fname] = link_tmp
            try:
                os.link(directory / source_tmp, directory / link_tmp)
            except OSError:
                shutil.copyfile(directory / source_tmp, directory / link_tmp)
                _fsync_file(directory / link_tmp)  # a copy is data of its own
    except BaseException:
        for f in files:
            f.close()
        for tmp_name in staged.values():
            (directory / tmp_name).unlink(missing_ok=True)
        raise
    if before_commit is not None:
        try:
            before_commit()
        except BaseException:
            for tmp_name in staged.values():
                (directory / tmp_name).unlink(missing_ok=True)
            raise
    _fsync_dir(directory)  # staged files durable; so are the previous commit's renames
    for marker in previous:
        marker.unlink(missing_ok=True)
    marker = directory / f"{name}.{token}{MARKER_SUFFIX}"
    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    _fsync_dir(directory)  # the commit point
    _roll_forward(directory, staged)


def settle_group(directory: PathLike, name: str) -> None:
    """Make the last :func:`commit_group` of ``name`` durable (the deferred directory fsync) and remove its marker."""
    directory = Path(directory)
    names = _names(directory)  # one listing for the markers and their staged files
    markers = _markers(directory, name, names)
    if not markers:
        return
    for marker in markers:
        _roll_forward_marker(directory, marker, names)
    _fsync_dir(directory)
    for marker in markers:
        marker.unlink(missing_ok=True)


def group_pending(directory: PathLike, name: str) -> bool:
    """Whether a commit of ``name`` was committed (journal or marker) but not all its files renamed yet."""
    directory = Path(directory)
    if (directory / (name + JOURNAL_SUFFIX)).exists():
        return True
    return any(_marker_staged(directory, m) for m in _markers(directory, name))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _names(directory: Path) -> list[str]:
    """The entries of ``directory`` (hidden ones included, as ``Path.glob`` lists them), listed once for a commit's lookups."""
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _markers(directory: Path, name: str, names: list[str] | None = None) -> list[Path]:
    """The commit markers ``<name>.<token>.commit`` of ``directory``, oldest first."""
    found = []
    for n in _names(directory) if names is None else names:
        if n.endswith(MARKER_SUFFIX) and (hit := _MARKER_RE.fullmatch(n)) and hit.group(1) == name:
            marker = directory / n
            if not marker.is_symlink():
                found.append(marker)
    return sorted(found)


def _marker_staged(directory: Path, marker: Path, names: list[str] | None = None) -> dict[str, str]:
    """``{target: staged name}`` for the staged files of ``marker``'s commit still in ``directory``."""
    token = marker.name[: -len(MARKER_SUFFIX)].rsplit(".", 1)[1]  # hex
    suffix = f".{token}{_STAGED_SUFFIX}"
    return {n[: -len(suffix)]: n for n in (_names(directory) if names is None else names)
            if n.endswith(suffix) and len(n) > len(suffix)}


def _roll_forward_marker(directory: Path, marker: Path, names: list[str] | None = None) -> bool:
    staged = _marker_staged(directory, marker, names)
    _roll_forward(directory, staged)
    return bool(staged)


def _plain_name(name: object) -> bool:
    """A single file name of the directory: no separator, not ``.``/``..``, no NUL."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _roll_forward(directory: Path, staged: Mapping[str, str]) -> None:
    """Rename the staged files of a journal into place; entries naming anything but a staged file of this
    directory (a crafted journal: ``../``, absolute paths, symlinks) are ignored."""
    if not isinstance(staged, Mapping):
        return
    base = os.fspath(directory)
    for fname, tmp_name in staged.items():
        if not (_plain_name(fname) and _plain_name(tmp_name) and str(tmp_name).endswith(_STAGED_SUFFIX)):
            continue
        tmp, target = os.path.join(base, tmp_name), os.path.join(base, fname)
        try:
            if not stat.S_ISREG(os.lstat(tmp).st_mode):  # a regular file, not a link to one
                continue
        except FileNotFoundError:  # renamed already
            continue
        if os.path.islink(target):  # not followed, not replaced
            continue
        os.replace(tmp, target)


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
    markers = [m for m in sorted(directory.glob("*" + MARKER_SUFFIX)) if _MARKER_RE.fullmatch(m.name)]
    for marker in markers:
        if marker.is_symlink():
            continue
        if _roll_forward_marker(directory, marker):
            recovered.append(_MARKER_RE.fullmatch(marker.name).group(1))  # type: ignore[union-attr]
    # Staged files without a journal or marker belong to a commit that never happened.
    for leftover in directory.glob("*" + _STAGED_SUFFIX):
        leftover.unlink(missing_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    if recovered or markers:
        _fsync_dir(directory)  # the renames are durable before their marker goes
    for marker in markers:
        if not marker.is_symlink():
            marker.unlink(missing_ok=True)
    return recovered
