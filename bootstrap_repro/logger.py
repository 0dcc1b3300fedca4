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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from bootstrap_repro._current import Activatable
from bootstrap_repro.errors import UnsafePathError
from bootstrap_repro.fileio import atomic_write_text

__all__ = ["Logger", "read_logs"]

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


def read_logs(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a ``logs.json``; a missing file gives ``{}``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of lists")
    return data


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
        #: Keys of list values -> (the values already encoded, their JSON text without brackets).
        self._encoded: dict[str, tuple[list[Any], str]] = {}
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
        if load and self.json_path and self.json_path.exists():
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
        """Close the text file (values already flushed stay on disk)."""
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
        """The text of ``<name>.json``: ``json.dumps`` of the (materialized) values, NaN as null.

        The encoded text of each list is kept, so a flush encodes only the values
        logged since the previous one; a list whose already-encoded part changed
        (truncated, edited in place) is encoded again in full.
        """
        self.materialize()
        if not all(isinstance(k, str) for k in self.values):  # json.dumps turns such keys into strings
            self._encoded.clear()
            safe = {k: [_json_safe(v) for v in vs] if isinstance(vs, list) else _json_safe(vs)
                    for k, vs in self.values.items()}
            return json.dumps(safe, allow_nan=False)
        encoded, parts = {}, []
        for k, vs in self.values.items():
            if isinstance(vs, list):
                done, text = self._encoded.get(k, ((), ""))
                n = len(done)
                if n > len(vs) or vs[:n] != done:  # C-speed check; equal values compare by identity first
                    n, text = 0, ""
                if len(vs) > n:
                    more = _dumps_list(vs[n:])[1:-1]
                    text = f"{text}, {more}" if n else more
                encoded[k] = (vs[:], text)
                parts.append(f"{json.dumps(k)}: [{text}]")
            else:
                parts.append(f"{json.dumps(k)}: {json.dumps(_json_safe(vs), allow_nan=False)}")
        self._encoded = encoded
        return "{" + ", ".join(parts) + "}"

    def flush(self) -> None:
        """Write all values to ``<name>.json`` atomically (temp file + rename)."""
        if self.json_path is None:
            self.materialize()
            return
        # The directory is fsynced by the checkpoint commit that follows each epoch.
        atomic_write_text(self.json_path, self.to_json() + "\n", fsync_dir=False)

    def lengths(self) -> dict[str, int]:
        """How many values each key holds (saved in checkpoints)."""
        return {k: len(v) for k, v in self.values.items() if isinstance(v, list)}

    def truncate(self, lengths: Mapping[str, int]) -> None:
        """Drop values logged after a checkpoint that recorded ``lengths``."""
        self.values = {k: v[: lengths[k]] for k, v in self.values.items() if k in lengths}
        self._pending = {k: i for k, i in self._pending.items() if k in self.values}

    # ------------------------------------------------------------------ messages
    def log_message(self, *message: Any, level: str = "INFO", print_header: bool = True) -> None:
        """Print a message and append it to the text file."""
        lvl = LEVELS.get(level.upper(), 20)
        text = " ".join(str(m) for m in message)
        line = f"[{level[0].upper()} {_dt.datetime.now():%Y-%m-%d %H:%M:%S}] {_caller()}: {text}" if print_header else text
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


def _fmt(v: Any) -> str:
    if _is_tensor(v) and v.numel() == 1:
        v = v.item()
    return f"{v:.4f}" if isinstance(v, float) else str(v)


#: Modules whose frames the message header skips to name the code that logged: this one, and
#: wrappers such as the compatibility layer's ``bootstrap.lib.logger`` (which adds itself).
CALLER_SKIP: set[str] = {__name__}


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
