"""Logger: values to ``logs.json``, messages to the screen and ``logs.txt``.

As in bootstrap.pytorch::

    Logger(dir_logs='logs/mnist')
    Logger().log_value('train_epoch.epoch', epoch)
    Logger().flush()                      # writes logs.json (atomically)
    Logger()("Launching training procedures")

``Logger()`` with no arguments returns the current experiment's logger (see
:mod:`bootstrap_repro._current`).  Values may be tensors: they stay on their
device until :meth:`Logger.flush` converts them all at once, so logging a
per-batch loss costs no host synchronisation.  This module does not import torch.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from bootstrap_repro._current import Activatable
from bootstrap_repro._lingering import LingeringWorker
from bootstrap_repro.errors import UnsafePathError
from bootstrap_repro.fileio import _fsync_dir, _write_temp

__all__ = ["Logger", "read_logs", "load_log", "JOURNAL_SUFFIX"]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


#: Types seen to be tensors (``torch.Tensor`` and its subclasses), so that the per-batch
#: check is one set lookup; this module never imports torch itself.
_TENSOR_TYPES: set[type] = set()


def _is_tensor(value: Any) -> bool:
    cls = type(value)
    if cls in _TENSOR_TYPES:
        return True
    if hasattr(value, "detach") and hasattr(value, "tolist"):
        _TENSOR_TYPES.add(cls)
        return True
    return False


def _to_python(values: list[Any]) -> list[Any]:
    """Convert the tensors in ``values``: a CPU scalar is read in place, the others are
    moved with one host transfer per dtype/device."""
    out = list(values)
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, t in enumerate(values):
        if not _is_tensor(t):
            continue
        if t.numel() != 1:
            out[i] = t.detach().cpu().tolist()
        elif getattr(t, "is_cpu", False):
            out[i] = t.item()
        else:
            groups.setdefault((t.device, t.dtype), []).append(i)
    if groups:
        import torch  # a tensor was logged, so torch is loaded already

        for positions in groups.values():
            flat = torch.stack([values[i].detach().reshape(()) for i in positions]).cpu().tolist()
            for i, v in zip(positions, flat):
                out[i] = v
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


def _dumps_list(values: list[Any]) -> str:
    """``json.dumps`` of ``values`` with NaN as null and infinities as +-1e308."""
    try:
        return json.dumps(values, allow_nan=False)
    except ValueError:  # a non-finite float
        return json.dumps([_json_safe(v) for v in values], allow_nan=False)


#: ``<name>.json.journal``: the values flushed since ``<name>.json`` was last written whole.
JOURNAL_SUFFIX = ".journal"


def _fingerprint(data: bytes | None) -> list[int] | None:
    """What identifies one version of ``<name>.json``: its size and CRC-32."""
    return None if data is None else [len(data), zlib.crc32(data)]


def journal_records(raw: bytes, base: bytes | None) -> tuple[list[dict[str, Any]], int, int] | None:
    """The records of journal bytes ``raw`` that apply to the json file whose bytes are ``base``.

    Returns ``(records, valid_bytes, valid_lines)``, where the ``valid_*`` count the complete,
    well-formed lines (a line torn by a crash and everything after it are left out), or None
    when the journal does not belong to this version of the json file (it was written whole after
    every record of the journal: nothing to replay).

    A journal is a header line ``{"journal": 1, "base": [size, crc32]}`` naming the json file it
    extends, then one line per flush, ``{"a": {key: [new values]}, "s": {key: value}}``.  Before the
    json file is rewritten whole, a ``{"mark": [size, crc32], "at": LINE}`` line says that the new
    file holds every record up to line ``LINE``: a crash between the rename and the journal's reset
    then replays only the records after it.
    """
    lines: list[Any] = []
    valid = 0
    for line in raw.split(b"\n")[:-1]:  # the last piece has no newline: torn or empty
        try:
            lines.append(json.loads(line))
        except ValueError:
            break
        valid += len(line) + 1
    if not lines or not isinstance(lines[0], dict) or lines[0].get("journal") != 1:
        return None
    fp = _fingerprint(base)
    start = 1 if lines[0].get("base") == fp else None
    for i, rec in enumerate(lines):
        if isinstance(rec, dict) and "mark" in rec and rec["mark"] == fp and isinstance(rec.get("at"), int):
            start = rec["at"] + 1  # the last mark naming this file wins
    if start is None:
        return None
    records = [r for r in lines[start:] if isinstance(r, dict) and "mark" not in r]
    return records, valid, len(lines)


def _apply(data: dict[Any, Any], records: list[dict[str, Any]]) -> dict[Any, Any]:
    for rec in records:
        for k, vs in (rec.get("a") or {}).items():
            cur = data.get(k)
            if isinstance(cur, list) and isinstance(vs, list):
                cur.extend(vs)
            else:
                data[k] = list(vs) if isinstance(vs, list) else vs
        for k, v in (rec.get("s") or {}).items():
            data[k] = v
    return data


def _read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def load_log(path: str | os.PathLike[str], parse: Callable[[bytes | None], Any]) -> Any:
    """``parse(bytes of the json file, None when missing)`` with the values of ``<path>.journal``
    the file does not hold yet: every reader of a logs file goes through here.

    ``parse`` may raise (a strict reader); when it returns a dict, the journal's records are
    applied to it.  A writer compacting between the two reads is seen (the json file changed) and
    both are read again.
    """
    path = os.fspath(path)
    for attempt in range(5):
        base = _read_or_none(path)
        data = parse(base)
        raw = _read_or_none(path + JOURNAL_SUFFIX)
        if raw is None or not isinstance(data, dict):
            return data
        found = journal_records(raw, base)
        if found is None:
            if attempt < 4 and _read_or_none(path) != base:
                continue  # compacted meanwhile
            return data
        return _apply(data, found[0])
    return data  # pragma: no cover


def read_logs(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a ``logs.json`` and the values flushed to its journal since; a missing file gives ``{}``."""

    def parse(text: bytes | None) -> dict[str, Any]:
        if text is None:
            return {}
        data = json.loads(text.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of lists")
        return data

    return load_log(path, parse)


class Logger(Activatable):
    """Values to ``<dir_logs>/<name>.json``, messages to screen and ``<dir_logs>/<name>.txt``.

    Created without ``dir_logs``, it prints and buffers messages until
    :meth:`attach` gives it a directory.  ``Logger()`` returns the current one.
    """

    def __init__(
        self,
        dir_logs: str | os.PathLike[str] | None = None,
        name: str = "logs",
        *,
        level: str = "INFO",
        echo: bool = True,
        activate: bool = True,
    ) -> None:
        self.name = name
        self.dir: Path | None = None
        self.values: dict[str, list[Any]] = {}
        self.level = LEVELS[level.upper()]
        self.echo = echo
        #: Where screen output goes; the engine swaps in ``tqdm.write`` while a bar is shown.
        self.print_fn: Callable[[str], None] = lambda line: print(line, file=sys.stdout, flush=True)
        #: Keys that may hold tensors -> index of the first value that may be one.
        self._pending: dict[str, int] = {}
        #: The journal of flushed values (see :func:`journal_records`); None until the first flush.
        self._journal = _JournalWriter(self)
        self._buffer: list[str] = []
        self._txt: IO[str] | None = None
        if dir_logs is not None:
            self.attach(dir_logs)
        if activate and dir_logs is not None and not type(self).has_current():
            # The seed's ``Logger(dir_logs=...)`` made the logger current.
            type(self)._active.append(self)

    # ------------------------------------------------------------------ files
    @property
    def json_path(self) -> Path | None:
        return self.dir / f"{self.name}.json" if self.dir else None

    def attach(self, dir_logs: str | os.PathLike[str], *, load: bool = False) -> None:
        """Start writing to ``dir_logs``; buffered messages go to the text file.

        With ``load=True`` the existing json values are read back (resume).
        """
        self.dir = Path(dir_logs)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._journal.reset(load=load)
        if load and self.json_path and (self.json_path.exists() or self._journal.path.exists()):
            self.values = read_logs(self.json_path)
        path = self.dir / f"{self.name}.txt"
        try:  # an experiment dir you did not write may hold a symlink here: never append through it
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(f"{path}: is a symlink; bootstrap-repro appends to its own file only "
                                      f"(remove it: rm {path})") from None
            raise
        self._txt = os.fdopen(fd, "a", encoding="utf-8")
        for line in self._buffer:
            self._txt.write(line + "\n")
        self._txt.flush()
        self._buffer.clear()

    def close(self) -> None:
        """Write ``<name>.json`` whole, drop its journal and close the files (values already flushed
        stay on disk; a run killed before this leaves them in the journal, read back by every reader)."""
        self._journal.close()
        if self._txt is not None:
            self._txt.close()
            self._txt = None

    # ------------------------------------------------------------------ values
    def log_value(self, name: str, value: Any, should_print: bool = False, stack: bool = True) -> None:
        """Record ``value`` under ``name`` (appended when ``stack``, else replaced)."""
        if type(value) in _TENSOR_TYPES or _is_tensor(value):  # the engine's per-batch case without a call
            if value.requires_grad:  # the engine passes detached values: no new view per batch
                value = value.detach()
            if name not in self._pending:
                current = self.values.get(name)
                self._pending[name] = len(current) if stack and isinstance(current, list) else 0
        if stack:
            series = self.values.get(name)
            if series is None:  # not setdefault(name, []): no new list per call
                self.values[name] = [value]
            else:
                series.append(value)
        else:
            self.values[name] = value  # type: ignore[assignment]
        if should_print:
            shown = value.item() if _is_tensor(value) and value.numel() == 1 else value
            self.log_message(f"{name}: {shown}")

    def log_dict(self, group: str, values: Mapping[str, Any], description: str = "", should_print: bool = False, stack: bool = True) -> None:
        """``log_value(f'{group}.{k}', v)`` for every item; prints one line when asked."""
        for k, v in values.items():
            self.log_value(f"{group}.{k}", v, stack=stack)
        if should_print:
            shown = ", ".join(f"{k}: {_fmt(self.values[f'{group}.{k}'][-1] if stack else v)}" for k, v in values.items())
            self.log_message(f"{description or group} {shown}")

    def materialize(self) -> None:
        """Turn pending tensors into python numbers (one transfer per key), in place.

        Only the values logged since the last call are looked at.
        """
        for name, start in self._pending.items():
            vals = self.values.get(name)
            if isinstance(vals, list):
                start = min(start, len(vals))
                vals[start:] = _to_python(vals[start:])
            elif _is_tensor(vals):
                self.values[name] = _to_python([vals])[0]
        self._pending.clear()

    def to_json(self) -> str:
        """The text of ``<name>.json``: ``json.dumps`` of the (materialized) values, NaN as null."""
        self.materialize()
        safe = {k: [_json_safe(v) for v in vs] if isinstance(vs, list) else _json_safe(vs)
                for k, vs in self.values.items()}
        return json.dumps(safe, allow_nan=False)

    def flush(self) -> None:
        """Make the values logged since the last flush durable, in time and bytes proportional to them.

        They are appended (one line) to ``<name>.json.journal``: every reader sees them from then
        on, and they survive the process being killed.  The line's ``fdatasync`` (for a power loss)
        runs on a background thread, off the training loop: :meth:`sync` waits for it, and a
        checkpoint waits for it before it commits (a checkpoint never counts values the disk may
        lose).  ``<name>.json`` itself is rewritten whole (atomically) at the first flush, after
        values were truncated or edited in place, and on a background thread each time the journal
        has grown past the json file's size (so the total work stays proportional to the values
        logged), and at :meth:`close`.
        """
        self.materialize()
        if self.json_path is not None:
            self._journal.flush()

    def sync(self) -> None:
        """Block until the values flushed so far are on disk (their journal line fdatasync'd); raise its error."""
        self._journal.sync()

    def compact(self) -> None:
        """Write ``<name>.json`` whole now and restart its journal (waits for a background one)."""
        self.materialize()
        if self.json_path is not None:
            self._journal.flush(full=True)

    def lengths(self) -> dict[str, int]:
        """How many values each key holds (saved in checkpoints)."""
        return {k: len(v) for k, v in self.values.items() if isinstance(v, list)}

    def truncate(self, lengths: Mapping[str, int]) -> None:
        """Drop values logged after a checkpoint that recorded ``lengths``."""
        self.values = {k: v[: lengths[k]] for k, v in self.values.items() if k in lengths}
        self._journal.dirty = True  # the next flush writes the json file whole
        self._pending = {k: i for k, i in self._pending.items() if k in self.values}

    # ------------------------------------------------------------------ messages
    def log_message(self, *message: Any, level: str = "INFO", print_header: bool = True) -> None:
        """Print a message and append it to the text file."""
        lvl = LEVELS.get(level.upper(), 20)
        text = message[0] if len(message) == 1 and type(message[0]) is str else " ".join(str(m) for m in message)
        line = f"[{level[0].upper()} {_now_text()}] {_caller()}: {text}" if print_header else text
        if self._txt is not None:
            self._txt.write(line + "\n")
            self._txt.flush()
        else:
            self._buffer.append(line)
        if self.echo and lvl >= self.level:
            self.print_fn(line)

    def __call__(self, *message: Any, level: str = "INFO", print_header: bool = True) -> None:
        self.log_message(*message, level=level, print_header=print_header)

    def warning(self, *message: Any) -> None:
        self.log_message(*message, level="WARNING")

    def error(self, *message: Any) -> None:
        self.log_message(*message, level="ERROR")


def _key_text(k: Any) -> bytes:
    """The JSON text of ``k`` as an object key (``json.dumps`` turns 1 into "1")."""
    return json.dumps({k: 0})[1:-4].encode("utf-8")


class _JournalWriter:
    """Appends each flush's new values to ``<name>.json.journal`` and rewrites ``<name>.json`` whole
    now and then (off the training thread), keeping the journal's protocol (:func:`journal_records`).

    It keeps the JSON text of every flushed value, as chunks per key, so that rewriting the json file
    never reads the logger's lists (which the training thread keeps appending to).
    """

    #: Rewrite the json file when the journal holds more than ``max(MIN_BYTES, json size)`` bytes.
    MIN_BYTES = 1 << 20

    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.lock = threading.RLock()
        self.fd: int | None = None
        self.dirty = True  # the next flush rewrites the json file whole
        self.load = False
        self.lines = 0  # lines in the journal, the header included
        self.size = 0  # bytes in the journal
        self.json_size = 0
        #: key -> (the list flushed, its length then, its last value) or (None, 0, the scalar's JSON text).
        self.flushed: dict[Any, tuple[list[Any] | None, int, Any]] = {}
        #: key -> (is a list, JSON texts of its values in order, without brackets).
        self.chunks: dict[Any, tuple[bool, list[bytes]]] = {}
        self.keys: dict[Any, bytes] = {}
        #: The background rewrite of the json file (when the journal has grown past it).
        self.rewrites = LingeringWorker("logs-json-rewrite")
        #: The fdatasync of flushed lines, on a lingering daemon thread (no thread start per flush; one
        #: fdatasync covers every line appended before it starts).
        self.syncs = LingeringWorker("logs-journal-sync")

    @property
    def path(self) -> Path:
        return Path(f"{self.logger.json_path}{JOURNAL_SUFFIX}")

    def reset(self, *, load: bool) -> None:
        """A new directory: the first flush rewrites the json file (``load``: the journal there holds
        values of this run, kept until the new file is in place)."""
        self.close(write=False)
        self.dirty, self.load = True, load

    def close(self, write: bool = True) -> None:
        self.wait()
        with self.lock:
            if write and self.fd is not None and self.lines > 1:
                self._finish()
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
                if write and self.lines <= 1:  # an empty journal: the json file holds everything
                    self.path.unlink(missing_ok=True)
            self.dirty = True

    def _finish(self) -> None:
        """At close: the json file whole, then the journal removed (under the lock, no thread running).

        Cheaper than :meth:`_compact` (no mark line, no new journal): once the new json file is in
        place the journal no longer applies to it (its header names the file it extended), so a crash
        before the journal is removed leaves a journal every reader ignores, and one before the
        rename leaves the old file and its journal, as they were.
        """
        assert self.fd is not None
        tmp, fp = self._write_json(self._snapshot())
        try:
            os.replace(tmp, self.logger.json_path)  # type: ignore[arg-type]
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)  # the new file is durable before the journal goes
        os.close(self.fd)
        self.fd = None
        self.path.unlink(missing_ok=True)
        self.lines, self.size, self.json_size = 0, 0, fp[0]

    def wait(self) -> None:
        """Wait for the background work (the rewrite, the sync of the lines appended); raise its error."""
        self._join()
        self.sync()

    def _join(self) -> None:
        """Wait for the background rewrite; raise its error."""
        self.rewrites.wait()

    # ----------------------------------------------------------------- flush
    def flush(self, full: bool = False) -> None:
        self.syncs.raise_error()  # an earlier line could not be made durable: say so here
        values = self.logger.values
        if full or self.dirty or self.fd is None:
            self._join()
            with self.lock:
                self._rewrite()
            return
        appended, scalars, chunks = [], [], self.chunks
        flushed, keys = self.flushed, self.keys
        for k, vs in values.items():
            st = flushed.get(k)
            if type(vs) is list:
                n = 0
                if st is not None:
                    lst, n, last = st
                    if lst is not vs or len(vs) < n or (n and vs[n - 1] is not last):
                        return self.flush(full=True)  # truncated or edited in place
                if len(vs) > n:
                    text = _dumps_list(vs[n:])[1:-1].encode("utf-8")
                    kt = keys.get(k) or keys.setdefault(k, _key_text(k))
                    appended.append((k, kt, text))
                    flushed[k] = (vs, len(vs), vs[-1])
            else:
                if st is not None and st[0] is not None:
                    return self.flush(full=True)  # a list became a scalar
                text = json.dumps(_json_safe(vs), allow_nan=False).encode("utf-8")
                if st is None or st[2] != text:
                    kt = keys.get(k) or keys.setdefault(k, _key_text(k))
                    scalars.append((k, kt, text))
                    flushed[k] = (None, 0, text)
        if len(flushed) != len(values):
            return self.flush(full=True)  # a key was deleted
        if not appended and not scalars:
            return None
        parts = []
        if appended:
            parts.append(b'"a": {' + b", ".join(kt + b": [" + t + b"]" for _, kt, t in appended) + b"}")
        if scalars:
            parts.append(b'"s": {' + b", ".join(kt + b": " + t for _, kt, t in scalars) + b"}")
        line = b"{" + b", ".join(parts) + b"}\n"
        with self.lock:
            for k, _, t in appended:
                entry = chunks.get(k)
                if entry is None:
                    chunks[k] = (True, [t])
                else:
                    entry[1].append(t)
            for k, _, t in scalars:
                chunks[k] = (False, [t])
            self._append(line, sync=False)
            grown = self.size > max(self.MIN_BYTES, self.json_size)
        self._request_sync()
        if grown and self.rewrites.idle:
            self.rewrites.raise_error()  # the previous rewrite's failure, said here
            self.rewrites.submit(self._compact)
        return None

    def _append(self, line: bytes, sync: bool = True) -> None:
        assert self.fd is not None
        os.write(self.fd, line)
        if sync:
            _datasync(self.fd)
        self.lines += 1
        self.size += len(line)

    # ------------------------------------------------------------------ sync
    def _request_sync(self) -> None:
        """Have the lines appended so far fdatasync'd on the sync thread."""
        self.syncs.submit(self._datasync)

    def _datasync(self) -> None:
        with self.lock:  # a duplicate of the fd: the journal may be replaced or closed meanwhile
            fd = os.dup(self.fd) if self.fd is not None else None
        if fd is not None:
            try:
                _datasync(fd)
            finally:
                os.close(fd)

    def sync(self) -> None:
        """Wait until the lines appended before this call are fdatasync'd; raise the sync's error."""
        self.syncs.wait()

    # --------------------------------------------------------------- rewrite
    def _snapshot(self) -> list[tuple[bytes, bool, list[bytes]]]:
        return [(self.keys.get(k) or self.keys.setdefault(k, _key_text(k)), is_list, list(texts))
                for k, (is_list, texts) in self.chunks.items()]

    def _write_json(self, snapshot: list[tuple[bytes, bool, list[bytes]]]) -> tuple[Path, list[int]]:
        """The json file's text from ``snapshot`` into a fsynced temporary file; its fingerprint."""
        path = self.logger.json_path
        assert path is not None
        crc, size = 0, 0

        def writer(f: IO[bytes]) -> None:
            nonlocal crc, size

            def put(b: bytes) -> None:
                nonlocal crc, size
                f.write(b)
                crc = zlib.crc32(b, crc)
                size += len(b)

            put(b"{")
            for i, (kt, is_list, texts) in enumerate(snapshot):
                put((b", " if i else b"") + kt + (b": [" if is_list else b": "))
                first = True
                for t in texts:
                    if t:
                        put(t if first else b", " + t)
                        first = False
                if is_list:
                    put(b"]")
            put(b"}\n")

        tmp = _write_temp(path, writer, fsync=True)
        return tmp, [size, crc]

    def _new_journal(self, fp: list[int], tail: bytes = b"", tail_lines: int = 0) -> None:
        header = json.dumps({"journal": 1, "base": fp}).encode("utf-8") + b"\n"
        tmp = _write_temp(self.path, lambda f: f.write(header + tail), fsync=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)  # both renames (json file, journal) are durable
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.lines, self.size = 1 + tail_lines, len(header) + len(tail)

    def _rewrite(self) -> None:
        """Rewrite the json file whole from the logger's values (under the lock, no thread running)."""
        logger = self.logger
        keys = self.keys
        self.flushed.clear()
        self.chunks = {}
        for k, vs in logger.values.items():
            if type(vs) is list:
                self.chunks[k] = (True, [_dumps_list(vs)[1:-1].encode("utf-8")])
                self.flushed[k] = (vs, len(vs), vs[-1] if vs else None)
            else:
                text = json.dumps(_json_safe(vs), allow_nan=False).encode("utf-8")
                self.chunks[k] = (False, [text])
                self.flushed[k] = (None, 0, text)
            keys.get(k) or keys.setdefault(k, _key_text(k))
        tmp, fp = self._write_json(self._snapshot())
        try:
            if self.fd is None and not self.load:
                self.path.unlink(missing_ok=True)  # a journal of an earlier run in this dir
            elif self.fd is None and self.path.exists():
                # A resumed run: cut a torn last line, then mark the journal as included in the new file.
                raw = self.path.read_bytes()
                found = journal_records(raw, _read_or_none(os.fspath(self.logger.json_path)))
                if found is None:
                    self.path.unlink()
                else:
                    os.truncate(self.path, found[1])
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                    self.lines, self.size = found[2], found[1]
            if self.fd is not None:
                self._append(json.dumps({"mark": fp, "at": self.lines - 1}).encode("utf-8") + b"\n")
            os.replace(tmp, self.logger.json_path)  # type: ignore[arg-type]
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._new_journal(fp)
        self.json_size, self.dirty, self.load = fp[0], False, False

    def _compact(self) -> None:
        """Rewrite the json file from the values flushed so far (the chunks, not the logger's lists,
        which the training thread goes on appending to), then restart the journal with the records
        flushed meanwhile."""
        with self.lock:
            if self.fd is None:
                return
            snapshot, at, offset = self._snapshot(), self.lines - 1, self.size
        tmp, fp = self._write_json(snapshot)
        with self.lock:
            if self.fd is None:  # closed meanwhile
                tmp.unlink(missing_ok=True)
                return
            with open(self.path, "rb") as f:  # the records flushed since the snapshot
                f.seek(offset)
                tail = f.read(self.size - offset)
            tail_lines = self.lines - 1 - at
            try:
                self._append(json.dumps({"mark": fp, "at": at}).encode("utf-8") + b"\n")
                os.replace(tmp, self.logger.json_path)  # type: ignore[arg-type]
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._new_journal(fp, tail, tail_lines)
            self.json_size = fp[0]


def _datasync(fd: int) -> None:
    os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)


def _fmt(v: Any) -> str:
    if _is_tensor(v) and v.numel() == 1:
        v = v.item()
    return f"{v:.4f}" if isinstance(v, float) else str(v)


#: Modules whose frames the message header skips to name the code that logged: this one, and
#: wrappers such as the compatibility layer's ``bootstrap.lib.logger`` (which adds itself).
CALLER_SKIP: set[str] = {__name__}


_clock_text: tuple[int, str] = (-1, "")


def _now_text() -> str:
    """The local time as ``%Y-%m-%d %H:%M:%S``, formatted once per second (a progress line every few ms)."""
    global _clock_text
    sec = int(time.time())
    cached = _clock_text  # one read: another thread may replace it meanwhile
    if cached[0] != sec:
        cached = _clock_text = (sec, f"{_dt.datetime.fromtimestamp(sec):%Y-%m-%d %H:%M:%S}")
    return cached[1]


def _caller() -> str:
    """``pkg/module`` of the code that logged (skipping the modules of :data:`CALLER_SKIP`)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in CALLER_SKIP:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    mod = str(frame.f_globals.get("__name__", "?"))
    parts = mod.split(".")
    return "/".join(parts[-2:])
