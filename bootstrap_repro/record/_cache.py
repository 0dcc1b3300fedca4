"""The result cache: completed experiments by cache key, materialised again instead of trained.

Layout of the store (``$BOOTSTRAP_REPRO_CACHE_DIR/results``, else
``$XDG_CACHE_HOME/bootstrap-repro/results``, else ``~/.cache/bootstrap-repro/results``)::

    <key>/manifest.json         key, source experiment, its record, its inputs, {file: size, sha256[, link]}
    <key>/files/...             the experiment's files (logs, checkpoints, ...)
    .variants/<key>             keys of the entries of the same key made from other inputs (one a line)
    .locks/<key>.lock           flock: exclusive to publish or remove, shared to read
    .tmp-<key12>-*/             an entry being published (renamed to <key> when complete)

An entry appears with one ``rename`` of a complete directory, so a reader sees
all of it or nothing; concurrent publishers of one key serialise on its lock
and the loser keeps the winner's entry.  Every lookup checks each file's
sha256: a damaged or partly deleted entry is reported and ignored.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import UnsafePathError
from bootstrap_repro.fileio import atomic_write_json
from bootstrap_repro.record._errors import CacheEntryNotFoundError
from bootstrap_repro.record._inputs import _sha256_file, inputs_digest
from bootstrap_repro.record._lock import LOCK_NAME, file_lock

__all__ = ["ResultCache", "CacheEntry", "EntryInfo", "GcReport", "cache_root", "CACHE_DIR_ENV", "NO_CACHE_ENV"]

CACHE_DIR_ENV = "BOOTSTRAP_REPRO_CACHE_DIR"
#: ``BOOTSTRAP_REPRO_NO_CACHE=1`` does what ``run --no-cache`` does (``rerun`` sets it).
NO_CACHE_ENV = "BOOTSTRAP_REPRO_NO_CACHE"
MANIFEST = "manifest.json"
FILES = "files"
FORMAT = 1
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
#: Files of an experiment dir that are not results: rewritten, rebuilt or private to the dir.
_SKIP_NAMES = {LOCK_NAME, "options.yaml"}
_SKIP_DIRS = {"repro"}


def cache_root() -> Path:
    """Where the results live (see the module docstring)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env) / "results"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "bootstrap-repro" / "results"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _skip(rel: Path) -> bool:
    name = rel.name
    return (
        rel.parts[0] in _SKIP_DIRS
        or name in _SKIP_NAMES
        or (name.startswith("plotly-") and name.endswith(".min.js"))  # the view's asset, linked again by rebuild
        or (name.startswith(".") and name.endswith(".tmp"))
        or name.endswith((".staged", ".commit.json"))
    )


def _copy_hashing(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` to ``dst`` (a new file), returning its size and sha256.

    Not fsynced: an entry is only ever trusted after every file's size and sha256 were checked
    (:meth:`ResultCache.reading`), so a copy cut short by a power loss is a damaged entry (reported,
    ignored, replaced by the next run), never a wrong hit; a run does not wait for the disk here.
    """
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _safe_rel(rel: Any) -> bool:
    """A relative path that stays inside its dir: no absolute path, no ``..``, no NUL."""
    return (isinstance(rel, str) and bool(rel) and not rel.startswith("/") and "\0" not in rel
            and ".." not in Path(rel).parts)


def _dir_size(path: Path) -> int:
    total, seen = 0, set()
    for p in path.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


@dataclass(frozen=True)
class CacheEntry:
    """A verified entry: its directory and manifest."""

    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        return self.manifest.get("source", {})

    def hit_record(self) -> dict[str, Any]:
        """What a materialised experiment's record says under ``cache_hit_of``."""
        src = self.source
        return {"key": self.manifest.get("base_key", self.key), "entry": self.key, "exp_dir": src.get("exp_dir"), "host": src.get("host"),
                "started": src.get("started"), "ended": src.get("ended"), "published": self.manifest.get("created")}


@dataclass(frozen=True)
class EntryInfo:
    """One row of ``cache ls``."""

    key: str
    path: Path
    created: str | None
    last_used: float
    size: int
    source: str | None
    problem: str | None  #: None for an entry that looks complete (sizes only; lookup checks hashes)


@dataclass
class GcReport:
    """What ``cache gc`` removed."""

    removed: list[tuple[str, str]] = field(default_factory=list)  #: (name, reason)
    freed: int = 0
    kept: int = 0


class ResultCache:
    """The store of completed experiments (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()

    # ------------------------------------------------------------------ paths and locks
    def entry_path(self, key: str) -> Path:
        return self.root / key

    def _lock_path(self, key: str) -> Path:
        return self.root / ".locks" / f"{key}.lock"

    @contextmanager
    def _locked(self, key: str, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
        with file_lock(self._lock_path(key), shared=shared, blocking=blocking) as ok:
            yield ok

    # ------------------------------------------------------------------ checking
    def _check(self, key: str, *, hashes: bool = True) -> tuple[dict[str, Any] | None, str | None]:
        """``(manifest, None)`` for a sound entry, ``(None, problem)`` for a damaged one, ``(None, None)`` if absent."""
        path = self.entry_path(key)
        if not path.exists():
            return None, None
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            files = manifest["files"]
            if manifest.get("key") != key or not isinstance(files, dict):
                return None, f"{MANIFEST} does not describe this key"
        except FileNotFoundError:
            return None, f"no {MANIFEST}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"{MANIFEST} unreadable ({exc})"
        for rel, meta in files.items():
            if not _safe_rel(rel) or not isinstance(meta, dict) or (meta.get("link") and not _safe_rel(meta["link"])):
                return None, f"{MANIFEST} names {rel!r}, a path outside the entry"
            f = path / FILES / rel
            if f.is_symlink():
                return None, f"{rel} is a symlink"
            try:
                size = f.stat().st_size
            except OSError:
                return None, f"{rel} is missing"
            if size != meta.get("size"):
                return None, f"{rel} has {size} bytes, expected {meta.get('size')}"
            if hashes and not meta.get("link") and _sha256_file(f) != meta.get("sha256"):
                return None, f"{rel} does not match its sha256"
        return manifest, None

    @contextmanager
    def reading(self, key: str, warn: Callable[[str], None] | None = None) -> Iterator[CacheEntry | None]:
        """Look ``key`` up (every file's sha256 is checked) and hold it against removal inside the block.

        A damaged entry is reported through ``warn`` in one line and yields None.
        """
        if not self.entry_path(key).exists():
            yield None
            return
        with self._locked(key, shared=True):
            manifest, problem = self._check(key)
            if problem is not None and warn is not None:
                warn(f"cache entry {key[:12]} in {self.root} is damaged ({problem}); ignored, the run trains "
                     f"(bootstrap-repro cache gc removes it)")
            if manifest is None:
                yield None
                return
            try:
                os.utime(self.entry_path(key) / MANIFEST)  # last use, for `cache gc --max-size`
            except OSError:
                pass
            yield CacheEntry(key, self.entry_path(key), manifest)

    def candidates(self, key: str) -> list[str]:
        """``key`` and its variants: entries of the same key computed from other inputs (data, helper code)."""
        try:
            lines = (self.root / ".variants" / key).read_text(encoding="utf-8").split()
        except OSError:
            lines = []
        return [key, *dict.fromkeys(k for k in lines if _KEY_RE.match(k) and k != key)]

    def lookup(self, key: str, warn: Callable[[str], None] | None = None) -> CacheEntry | None:
        """The verified entry of ``key`` (not held: see :meth:`reading`)."""
        with self.reading(key, warn) as entry:
            return entry

    # ------------------------------------------------------------------ publish
    def publish(self, key: str, exp_dir: Path, record: dict[str, Any], inputs: dict[str, Any] | None = None) -> bool:
        """Copy the results of ``exp_dir`` into the store under ``key``; False if a sound entry was there.

        ``inputs`` is the run's discovered inputs (see :mod:`._inputs`).  When the key already has an
        entry made from other inputs (its data or helper code changed since), this one is stored
        beside it as a variant of the key (``.variants/<key>``); a damaged entry is replaced.
        """
        if not _KEY_RE.match(key):
            raise ValueError(f"key: expected 64 hex digits, got {key!r}")
        exp_dir = Path(exp_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        base = key
        new_digest = inputs_digest(inputs) if inputs is not None else None
        for candidate in self.candidates(base):  # the same key, other inputs: another variant of it
            manifest, _ = self._check(candidate, hashes=False)
            old = (manifest or {}).get("inputs")
            if manifest is not None and (inputs_digest(old) if isinstance(old, dict) else None) == new_digest:
                if self._check(candidate)[0] is not None:
                    return False
                key = candidate  # the same inputs but damaged: replaced below
                break
        else:
            if self._check(base)[0] is not None:  # a sound entry of other inputs: this one goes beside it
                key = hashlib.sha256(f"{base}:{new_digest}".encode()).hexdigest()
        if key != base and key not in self.candidates(base):
            with self._locked(base):
                variants = self.root / ".variants" / base
                variants.parent.mkdir(parents=True, exist_ok=True)
                with open(variants, "a", encoding="utf-8") as f:  # one short line: an atomic append
                    f.write(key + "\n")
        with self._locked(key):
            manifest, problem = self._check(key)
            if manifest is not None:
                return False
            if problem is not None:
                self._remove_dir(self.entry_path(key))
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=self.root))
            try:
                files = self._copy_in(exp_dir, tmp / FILES)
                # One line (the C encoder: the inputs hold thousands of entries), not fsynced (see _copy_hashing:
                # a manifest cut short is unreadable, so the entry is damaged, never wrong).
                atomic_write_json(tmp / MANIFEST, {
                    "format": FORMAT, "key": key, "base_key": base, "created": _now(),
                    "source": {"exp_dir": str(exp_dir.resolve()), "host": record.get("environment", {}).get("host"),
                               "started": record.get("started"), "ended": record.get("ended"),
                               "command": record.get("command", {}).get("argv")},
                    "record": record,
                    "inputs": inputs,
                    "files": files,
                }, fsync=False)
                os.rename(tmp, self.entry_path(key))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return True

    @staticmethod
    def _copy_in(exp_dir: Path, dest: Path) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = {}
        inodes: dict[tuple[int, int], str] = {}
        for src in sorted(exp_dir.rglob("*")):
            rel = src.relative_to(exp_dir)
            if src.is_symlink() or not src.is_file() or _skip(rel):
                continue
            st = src.stat()
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            first = inodes.get((st.st_dev, st.st_ino))
            if first is not None:  # hard links of the dir (ckpt_best_* of ckpt_last_*) stay links
                os.link(dest / first, target)
                files[rel.as_posix()] = {**files[first], "link": first}
                continue
            size, digest = _copy_hashing(src, target)
            inodes[(st.st_dev, st.st_ino)] = rel.as_posix()
            files[rel.as_posix()] = {"size": size, "sha256": digest}
        return files

    # ------------------------------------------------------------------ materialise
    @staticmethod
    def materialise(entry: CacheEntry, exp_dir: Path) -> list[str]:
        """Copy the entry's files into ``exp_dir`` (each atomically); returns their relative paths."""
        written = []
        for rel, meta in entry.manifest["files"].items():
            if not _safe_rel(rel) or (meta.get("link") and not _safe_rel(meta["link"])):  # checked by lookup too
                raise UnsafePathError(f"cache entry {entry.key[:12]}: {MANIFEST} names {rel!r}, a path outside the "
                                      f"experiment dir; remove the entry (bootstrap-repro cache rm {entry.key[:12]})")
            target = Path(exp_dir) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                tmp.unlink()
                if meta.get("link"):
                    os.link(Path(exp_dir) / meta["link"], tmp)
                else:
                    shutil.copyfile(entry.path / FILES / rel, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(rel)
        return written

    # ------------------------------------------------------------------ management
    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _KEY_RE.match(p.name) and p.is_dir())

    def entries(self) -> list[EntryInfo]:
        """Every entry, most recently used first (sizes checked, not hashes)."""
        out = []
        for key in self.keys():
            path = self.entry_path(key)
            manifest, problem = self._check(key, hashes=False)
            try:
                used = (path / MANIFEST).stat().st_mtime
            except OSError:
                used = path.stat().st_mtime
            out.append(EntryInfo(key, path, (manifest or {}).get("created"), used, _dir_size(path),
                                 ((manifest or {}).get("source") or {}).get("exp_dir"), problem))
        return sorted(out, key=lambda e: -e.last_used)

    def resolve(self, prefix: str) -> str:
        """The full key starting with ``prefix``; one-line error if none or several."""
        matches = [k for k in self.keys() if k.startswith(prefix.lower())] if prefix else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CacheEntryNotFoundError(
                f"cache: no entry {prefix!r} in {self.root}; list them with bootstrap-repro cache ls"
            )
        raise CacheEntryNotFoundError(
            f"cache: {prefix!r} matches {len(matches)} entries in {self.root}; give more digits of the key"
        )

    def remove(self, prefix: str) -> str:
        """Remove the entry whose key starts with ``prefix``; returns its key."""
        key = self.resolve(prefix)
        with self._locked(key):
            self._remove_dir(self.entry_path(key))
        return key

    def _remove_dir(self, path: Path) -> None:
        """Rename away first (the entry disappears at once), then delete."""
        if not path.exists():
            return
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
        os.rename(path, trash / "entry")
        shutil.rmtree(trash, ignore_errors=True)

    def gc(self, *, max_bytes: int | None = None, max_age_days: float | None = None,
           now: float | None = None) -> GcReport:
        """Drop damaged entries and leftovers; then, if asked, entries unused for ``max_age_days``
        and the least recently used ones until the store holds at most ``max_bytes``."""
        import time

        report = GcReport()
        if not self.root.is_dir():
            return report
        now = time.time() if now is None else now
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".trash-"):
                report.freed += _dir_size(p)
                shutil.rmtree(p, ignore_errors=True)
                report.removed.append((p.name, "leftover of a removal"))
            elif p.name.startswith(".tmp-"):
                prefix = p.name.split("-")[1]
                busy = [k for k in self._busy_keys(prefix)]
                if not busy:
                    report.freed += _dir_size(p)
                    shutil.rmtree(p, ignore_errors=True)
                    report.removed.append((p.name, "unfinished publish"))
        live = []
        for key in self.keys():
            with self._locked(key, blocking=False) as ok:
                if not ok:  # being published or read right now
                    report.kept += 1
                    continue
                _, problem = self._check(key)
                size = _dir_size(self.entry_path(key))
                if problem is not None:
                    self._remove_dir(self.entry_path(key))
                    report.removed.append((key, problem))
                    report.freed += size
                    continue
            used = (self.entry_path(key) / MANIFEST).stat().st_mtime
            live.append((used, key, size))
        live.sort()
        total = sum(s for _, _, s in live)
        kept = []
        for used, key, size in live:
            too_old = max_age_days is not None and now - used > max_age_days * 86400
            too_big = max_bytes is not None and total > max_bytes
            if too_old or too_big:
                with self._locked(key):
                    self._remove_dir(self.entry_path(key))
                report.removed.append((key, "unused for more than --max-age" if too_old else "over --max-size (least recently used)"))
                report.freed += size
                total -= size
            else:
                kept.append(key)
        report.kept += len(kept)
        return report

    def _busy_keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` whose lock is held (a publish in flight)."""
        locks = self.root / ".locks"
        busy = []
        for lock in locks.glob(f"{prefix}*.lock") if locks.is_dir() else []:
            with file_lock(lock, blocking=False) as ok:
                if not ok:
                    busy.append(lock.stem)
        return busy
