"""``bootstrap.lib.logger``: the seed's ``Logger`` API, on bootstrap-repro's logger.

``Logger()`` returns the current run's logger (under ``bootstrap-repro run``) wrapped in the seed's
API; outside a run, the first ``Logger(dir_logs=None, name='logs')`` creates one (screen only
without ``dir_logs``) and later calls return it, as the seed's singleton did.  Values, ``flush()``
(atomic ``logs.json``) and the text file are bootstrap-repro's; what the seed added is here:

- the levels ``Logger.DEBUG/INFO/SUMMARY/WARNING/ERROR/SYSTEM`` (the seed's ints), ``set_level``,
  and ``Logger()(msg, log_level=Logger.WARNING)``;
- a message at ``Logger.ERROR`` raises (``raise_error=False`` only logs it), as in the seed;
- ``log_dict(group, d)`` keeps ``perf_memory`` and checks the keys, as in the seed (not in ``logs.json``);
- ``values`` holds numbers, as the seed's (the native logger's may hold the engine's tensors until a flush).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bootstrap_repro import logger as _native

__all__ = ["Logger", "LoggedError"]

_native.CALLER_SKIP.add(__name__)  # message headers name the code that called Logger(), not this module


class LoggedError(RuntimeError):
    """Raised by a message logged at ``Logger.ERROR`` (the seed raised ``Exception(message)``)."""


_OWN = frozenset({"_native", "log_level", "perf_memory", "compactjson"})
_WRAPPER_ATTR = "_seed_api_logger"


class Logger:
    """The seed's ``Logger``: see the module docstring.  Other attributes are the native logger's."""

    DEBUG = -1
    INFO = 0
    SUMMARY = 1
    WARNING = 2
    ERROR = 3
    SYSTEM = 4
    indicator = {DEBUG: "D", INFO: "I", SUMMARY: "S", WARNING: "W", ERROR: "E", SYSTEM: "S"}
    #: The seed level -> bootstrap-repro's level name (its header letter and screen filter).
    _NATIVE_LEVEL = {DEBUG: "DEBUG", INFO: "INFO", SUMMARY: "INFO", WARNING: "WARNING", ERROR: "ERROR", SYSTEM: "INFO"}

    _instance: Logger | None = None  # the seed's singleton: a logger made outside a run

    _native: _native.Logger
    log_level: int
    perf_memory: dict[str, dict[str, list[Any]]]
    compactjson: bool

    def __new__(cls, dir_logs: str | os.PathLike[str] | None = None, name: str = "logs") -> Logger:
        if _native.Logger.has_current():
            return cls._wrap(_native.Logger.current())
        if Logger._instance is None:
            native = _native.Logger(dir_logs, name=name, activate=False)
            Logger._instance = cls._wrap(native)
            if dir_logs is None:
                Logger._instance.log_message("No logs files will be created (dir_logs attribute is empty)",
                                             log_level=Logger.WARNING)
        return Logger._instance

    def __init__(self, dir_logs: str | os.PathLike[str] | None = None, name: str = "logs") -> None:
        """Nothing: ``__new__`` returns the current or the singleton logger."""

    @classmethod
    def _wrap(cls, native: _native.Logger) -> Logger:
        wrapper = vars(native).get(_WRAPPER_ATTR)  # one wrapper per native logger: Logger() is Logger()
        if not isinstance(wrapper, cls):
            wrapper = object.__new__(cls)
            object.__setattr__(wrapper, "_native", native)
            object.__setattr__(wrapper, "log_level", Logger.INFO)
            object.__setattr__(wrapper, "perf_memory", {})
            object.__setattr__(wrapper, "compactjson", True)
            setattr(native, _WRAPPER_ATTR, wrapper)
        return wrapper

    # ------------------------------------------------------------------ delegation
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)
        return getattr(self._native, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._native, name, value)

    @property
    def values(self) -> dict[str, Any]:
        """The logged values by name, as numbers: the engine's tensors logged since the last flush are read first.

        The seed logged ``value.item()``; bootstrap-repro's logger keeps the engine's per-batch tensors
        until ``flush()`` (no device sync per batch), so reading them here costs one transfer per key.
        """
        self._native.materialize()
        return self._native.values

    @property
    def dir_logs(self) -> str | None:
        return str(self._native.dir) if self._native.dir else None

    @property
    def path_json(self) -> str | None:
        return str(self._native.json_path) if self._native.json_path else None

    @property
    def path_txt(self) -> str | None:
        return str(self._native.dir / f"{self._native.name}.txt") if self._native.dir else None

    # ------------------------------------------------------------------ the seed's methods
    def set_level(self, log_level: int) -> None:
        """Drop messages and values below ``log_level`` (``Logger.DEBUG`` shows debug messages)."""
        self.log_level = log_level
        self._native.level = _native.LEVELS[self._NATIVE_LEVEL.get(log_level, "INFO")]

    def set_json_compact(self, is_compact: bool) -> None:
        """Kept for the seed's API; ``logs.json`` is always compact."""
        self.compactjson = is_compact

    def __call__(self, *message: Any, **kwargs: Any) -> Any:
        return self.log_message(*message, **kwargs)

    def log_message(self, *message: Any, log_level: int = INFO, break_line: bool = True, print_header: bool = True,
                    stack_displacement: int = 1, raise_error: bool = True, adaptive_width: bool = True) -> int | None:
        """Print ``message`` and append it to ``logs.txt``; at ``Logger.ERROR``, raise :class:`LoggedError` too."""
        if log_level < self.log_level:
            return -1
        self._native.log_message(*message, level=self._NATIVE_LEVEL.get(log_level, "INFO"), print_header=print_header)
        if log_level == Logger.ERROR and raise_error:
            raise LoggedError(" ".join(str(m) for m in message))
        return None

    def log_value(self, name: str, value: Any, stack_displacement: int = 2, should_print: bool = False,
                  log_level: int = SUMMARY) -> int | None:
        """Append ``value`` to ``values[name]`` (written to ``logs.json`` by ``flush()``)."""
        if log_level < self.log_level:
            return -1
        self._native.log_value(name, value)
        if should_print:
            if isinstance(value, float):
                shown = f"{name}: {value:.6f}" if int(value) == 0 else f"{name}: {value:.2f}"
            else:
                shown = f"{name}: {value}"
            self.log_message(shown, log_level=log_level)
        return None

    def log_dict(self, group: str, dictionary: Mapping[str, Any], description: str = "", stack_displacement: int = 2,
                 should_print: bool = False, log_level: int = SUMMARY) -> int | None:
        """Keep ``dictionary`` in ``perf_memory[group]`` (same keys every call, as in the seed); print it if asked."""
        if log_level < self.log_level:
            return -1
        memory = self.perf_memory.setdefault(group, {})
        if memory:
            for key in memory:
                if key not in dictionary:
                    self.log_message(f'Key "{key}" not in the dictionary to be logged', log_level=Logger.ERROR)
            for key in dictionary:
                if key not in memory:
                    self.log_message(f'Key "{key}" is unknown. New keys are not allowed', log_level=Logger.ERROR)
        for key, value in dictionary.items():
            memory.setdefault(key, []).append(value)
        if should_print:
            self.log_dict_message(group, dictionary, description, log_level=log_level)
        return None

    def log_dict_message(self, group: str, dictionary: Mapping[str, Any], description: str = "",
                         stack_displacement: int = 2, log_level: int = SUMMARY) -> None:
        """Print ``group: description`` then one line per (nested) key."""
        self.log_message(f"{group}: {description}", log_level=log_level)

        def items(prefix: str, sub: Mapping[str, Any]) -> None:
            for key, value in sorted(sub.items(), key=lambda kv: str(kv[0])):
                nested = isinstance(value, Mapping)
                self.log_message(f"{prefix}{key}:" + ("" if nested else f" {value}"), log_level=log_level)
                if nested:
                    items(prefix + "  ", value)

        items("  ", dictionary)

    def reload_json(self) -> None:
        """Read ``logs.json`` back into ``values`` (a missing file leaves them as they are)."""
        path = self._native.json_path
        if path is not None and path.is_file():
            self._native.values = _native.read_logs(path)

    def flush(self) -> None:
        """Write ``logs.json`` (atomically)."""
        self._native.flush()

    def __repr__(self) -> str:
        return f"<bootstrap.lib.logger.Logger on {self._native.dir or 'screen only'}>"
