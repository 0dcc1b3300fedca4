"""``bootstrap.lib.options``: the seed's ``Options`` and ``OptionsDict``, on bootstrap-repro's classes.

Both are subclasses of :class:`bootstrap_repro.options.Options` / ``OptionsDict``, so bootstrap-repro
code accepts them.  What only the seed did lives here:

- ``Options(source=None, arguments_callback=None, lock=False, run_parser=True)`` is the seed's
  singleton.  Inside a bootstrap-repro run (``bootstrap-repro run``, or any ``opt.activate()``)
  every call returns the run's options, read-only.  Outside one, the first call builds them from
  ``source`` (a YAML file or a dict) or from ``-o/--path_opts FILE`` on ``sys.argv``, then applies
  the ``--key VALUE`` flags of ``sys.argv`` (when ``run_parser``); later calls return the same object.
  The flags are typed as bootstrap-repro types them; an unknown flag is a one-line ``OptionsError``.
- ``OptionsDict`` expands dotted keys (``d['a.b'] = 1`` sets ``d['a']['b']``), converts nested
  dicts, keeps non-string keys, and can be ``unlock()``-ed (a running experiment's options cannot).
- ``load_yaml_opts`` / ``save_yaml_opts`` / ``save`` / ``str_to_bool`` / ``has_key`` / ``__str__`` (JSON).

Files are read with bootstrap-repro's safe YAML loader (YAML 1.2 numbers: ``1e-3`` is a float) and
saved atomically.  ``__include__`` is looked up next to the including file, then as given (the seed).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bootstrap_repro import options as _native
from bootstrap_repro._current import NoCurrentError
from bootstrap_repro.errors import OptionsError, OptionsReadOnlyError
from bootstrap_repro.fileio import atomic_write_text

from .utils import merge_dictionaries

__all__ = ["Options", "OptionsDict", "MissingOptionsException", "merge_dictionaries", "str_to_bool"]

_TRUE = ("yes", "true")
_FALSE = ("no", "false")


def str_to_bool(v: Any) -> bool:
    """``'yes'``/``'true'`` -> True, ``'no'``/``'false'`` -> False (any case); else ``argparse.ArgumentTypeError``."""
    if isinstance(v, str):
        if v.lower() in _TRUE:
            return True
        if v.lower() in _FALSE:
            return False
    raise argparse.ArgumentTypeError(f"{v!r} cannot be converted to a bool (expected one of {', '.join(_TRUE + _FALSE)})")


class MissingOptionsException(OptionsError):
    """``Options()`` found nothing to build from: no ``-o/--path_opts`` on the command line, or ``-h`` was asked."""


def _caller_outside(module: str) -> str:
    """``file[line]: function`` of the first frame outside ``module``."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == module:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}[{frame.f_lineno}]: {frame.f_code.co_name}"


def _unfreeze(value: Any) -> None:
    if isinstance(value, (_native.OptionsDict, _native.OptionsList)):
        value._frozen = False
        for v in value.values() if isinstance(value, dict) else value:
            _unfreeze(v)


class _DottedLookup:
    """``'a.b' in d`` and ``d.get('a.b', default)`` through ``d['a.b']``, as the seed's options allowed."""

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, TypeError):
            return default


class OptionsDict(_DottedLookup, _native.OptionsDict):
    """The seed's options dictionary.

    ``d['a.b']`` reads and writes nested keys (missing levels are created on write), nested dicts
    become ``OptionsDict``, ``d.a.b`` reads keys as attributes, keys need not be strings.
    ``lock()`` makes it read-only (``PermissionError`` on writes), ``unlock()`` undoes it with a warning.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __getitem__(self, key: Any) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if isinstance(key, str) and "." in key:
            node: Any = self
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    raise KeyError(key)
                node = node[part]
            return node
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check(key)
        if isinstance(key, str) and "." in key:
            first, rest = key.split(".", 1)
            node = dict.get(self, first)
            if not isinstance(node, OptionsDict):
                if node is not None and not isinstance(node, Mapping):
                    raise OptionsError(f"{key}: cannot set it, {first!r} holds {node!r}, not a mapping of options")
                node = OptionsDict(node or {})
                dict.__setitem__(self, first, node)
            node[rest] = value
            return
        if isinstance(value, Mapping) and not isinstance(value, OptionsDict):
            value = OptionsDict(value)
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> OptionsDict:  # type: ignore[override]
        """A shallow copy (unlocked)."""
        new = OptionsDict()
        for key, value in self.items():
            dict.__setitem__(new, key, value)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> OptionsDict:  # type: ignore[override]
        new = OptionsDict()
        for key, value in self.items():
            dict.__setitem__(new, key, copy.deepcopy(value, memo))
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def unlock(self) -> None:
        """Make the tree writable again; warns (one line on stderr) naming the caller."""
        print(f"WARNING: Options unlocked by {_caller_outside(__name__)}.", file=sys.stderr, flush=True)
        _unfreeze(self)


def _lookup(tree: Mapping[Any, Any], key: Any) -> Any:
    """``tree[key]``, with dotted string keys walking down (on any mapping)."""
    if dict.__contains__(tree, key):  # type: ignore[arg-type]
        return dict.__getitem__(tree, key)  # type: ignore[index]
    if isinstance(key, str) and "." in key:
        node: Any = tree
        for part in key.split("."):
            if not isinstance(node, Mapping) or not dict.__contains__(node, part):  # type: ignore[arg-type]
                raise KeyError(key)
            node = dict.__getitem__(node, part)  # type: ignore[index]
        return node
    raise KeyError(key)


def _load_source(source: Any, chain: tuple[str, ...]) -> dict[Any, Any]:
    """The seed's ``load_yaml_opts``: a file or a dict, with its ``__include__`` files merged under it."""
    base: str | None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        real = os.path.realpath(path)
        if real in chain:
            raise OptionsError(f"{path}: __include__ cycle ({' -> '.join([*chain, real])}); remove one of these includes")
        data = _native.read_yaml(Path(path), path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise OptionsError(f"{path}: expected a mapping of options at the top level, got {type(data).__name__}")
        base, chain, where = os.path.dirname(path), (*chain, real), path
    elif isinstance(source, Mapping):
        data, base, where = dict(source), None, "options dict"
    else:
        raise TypeError(f"Options: expected the path of a YAML file or a dict of options, got {type(source).__name__}")
    includes = data.get("__include__")
    result: dict[Any, Any] = {}
    if includes:
        for inc in includes if isinstance(includes, list) else [includes]:
            if not isinstance(inc, str):
                raise OptionsError(f"{where}: __include__ must be a file name or a list of them, got {inc!r}")
            candidates = ([os.path.join(base, inc)] if base is not None else []) + [inc]
            found = next((c for c in candidates if os.path.isfile(c)), None)
            if found is None:
                raise OptionsError(f"{where}: __include__ {inc!r} not found (looked for {' and '.join(dict.fromkeys(candidates))})")
            merge_dictionaries(result, _load_source(found, chain))
    merge_dictionaries(result, data)
    result.pop("__include__", None)
    return result


def _split_argv(argv: Sequence[str]) -> tuple[str | None, list[str], bool]:
    """``sys.argv[1:]`` -> (the ``-o/--path_opts`` value, the other tokens, whether ``-h/--help`` is there)."""
    path: str | None = None
    rest: list[str] = []
    wants_help = False
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-o", "--path_opts"):
            if i + 1 >= len(argv):
                raise MissingOptionsException(f"{tok}: expected the options file after it")
            path, i = argv[i + 1], i + 2
            continue
        if tok.startswith("--path_opts="):
            path = tok.partition("=")[2]
        elif tok.startswith("-o") and not tok.startswith("--") and len(tok) > 2:
            path = tok[2:].removeprefix("=")
        elif tok in ("-h", "--help"):
            wants_help = True
        else:
            rest.append(tok)
        i += 1
    return path, rest, wants_help


_FIX = "pass -o/--path_opts FILE on the command line, call Options('file.yaml') first, or use `bootstrap-repro run -o FILE`"
_NO_OPTIONS = f"Options(): no options to build from; {_FIX}"


class _SeedOptionsType(type(_native.Options)):  # type: ignore[misc]
    """``Options(...)`` returns the current run's options, else the seed's singleton (built on first use)."""

    def __call__(cls, source: Any = None, arguments_callback: Any = None, lock: bool = False,  # type: ignore[override]
                 run_parser: bool = True, *, path_yaml: Any = None) -> Any:
        if source is None:
            source = path_yaml  # 0.0.13 named the first argument path_yaml
        instance = cls._existing()
        if instance is None:
            instance = cls._from_seed_arguments(source, arguments_callback, run_parser)
            Options._Options__instance = instance  # type: ignore[attr-defined]
        if lock:
            instance.lock()
        return instance


class Options(_DottedLookup, _native.Options, metaclass=_SeedOptionsType):
    """The seed's ``Options``: see the module docstring.  ``Options().options`` is its ``OptionsDict``."""

    __instance: Options | None = None  # the seed's singleton (tests reset ``Options._Options__instance``)
    MissingOptionsException = MissingOptionsException
    str_to_bool = staticmethod(str_to_bool)

    # ---------------------------------------------------------------- construction
    @classmethod
    def _existing(cls) -> Options | None:
        if _native.Options.has_current():
            current = _native.Options.current()
            return current if isinstance(current, Options) else cls._view(current)
        return Options.__instance

    @classmethod
    def _make(cls, tree: Mapping[Any, Any], source: Any) -> Options:
        instance = object.__new__(cls)
        instance._tree = tree if isinstance(tree, OptionsDict) else OptionsDict(tree)
        instance.source = source
        instance.overrides = {}
        return instance

    @classmethod
    def _view(cls, native: _native.Options) -> Options:
        """The seed's API on a bootstrap-repro ``Options`` (same tree, same read-only state)."""
        instance = object.__new__(cls)
        instance._tree = native._tree
        instance.source = native.source
        instance.overrides = native.overrides
        return instance

    @classmethod
    def _from_seed_arguments(cls, source: Any, arguments_callback: Any, run_parser: bool) -> Options:
        path, rest, wants_help = _split_argv(sys.argv[1:])
        if not source:
            if path is None:
                if wants_help:
                    print("usage: -o PATH_OPTS [--key.path VALUE ...]")
                raise MissingOptionsException(_NO_OPTIONS)
            source = path
        tree = cls.load_yaml_opts(source)
        if not run_parser:
            return cls._make(tree, source)
        if wants_help:
            print(cls._make(tree, source).help_text())
            raise MissingOptionsException("-h: the options were listed; nothing to run")
        if path is None:
            raise MissingOptionsException(f"-o/--path_opts: missing from the command line (the seed requires it); {_FIX}")
        full = OptionsDict(path_opts=path)
        for key, value in copy.deepcopy(tree).items():  # the callback gets the file's options untouched
            if key != "path_opts":
                full[key] = value
        instance = cls._make(full, source)
        instance.apply_overrides(rest)
        if arguments_callback is not None:
            namespace = argparse.Namespace(**_native.flatten(instance._tree))
            namespace = arguments_callback(instance, namespace, tree)
            instance._tree = OptionsDict(vars(namespace))
        return instance

    @classmethod
    def current(cls) -> Options:
        """The current run's options, else the seed's singleton; raises ``NoCurrentError`` if neither exists."""
        instance = cls._existing()
        if instance is None:
            raise NoCurrentError(_NO_OPTIONS)
        return instance

    @classmethod
    def has_current(cls) -> bool:
        return cls._existing() is not None

    @classmethod
    def load(cls, path: str | os.PathLike[str], overrides: Sequence[str] = (), *,  # type: ignore[override]
             defaults: Mapping[str, Any] | None = None, check: bool = True) -> Options:
        """bootstrap-repro's loader (platform defaults, schema check); the result is not the singleton."""
        native = _native.Options.load(path, overrides, defaults=defaults, check=check)
        instance = cls._make(native.as_dict(), native.source)
        instance.overrides = native.overrides
        return instance

    # ---------------------------------------------------------------- access
    @property
    def options(self) -> Any:
        """The tree (an ``OptionsDict``)."""
        return self._tree

    @property
    def path_opts(self) -> Any:
        """The ``-o/--path_opts`` file (the ``path_opts`` key), else the file these options came from."""
        value = dict.get(self._tree, "path_opts")
        if value is not None:
            return value
        return self.source if isinstance(self.source, (str, os.PathLike)) else None

    def __getitem__(self, key: Any) -> Any:
        try:
            return _lookup(self._tree, key)
        except KeyError:
            if key == "path_opts" and self.path_opts is not None:
                return self.path_opts
            raise

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(self._tree, OptionsDict):
            self._tree[key] = value
        else:  # a running experiment's tree: read-only (raises)
            super().__setitem__(key, value)

    def has_key(self, key: Any) -> bool:
        return key in self

    def __str__(self) -> str:
        return json.dumps(_native._plain(self._tree), indent=2, default=str)

    def copy(self) -> OptionsDict:  # type: ignore[override]
        """A deep, unlocked copy of the tree (the seed returned its dictionary's copy)."""
        return OptionsDict(_native._plain(self._tree))

    def help_text(self) -> str:
        lines = super().help_text().splitlines()
        where = self.path_opts or "a dict"
        lines[0] = f"usage: -o PATH_OPTS [--key.path VALUE ...]; options (from {where}):"
        return "\n".join(lines)

    def add_options(self, parser: argparse.ArgumentParser, options: Mapping[str, Any], prefix: str = "") -> None:
        """Add one ``--key`` argument per leaf of ``options`` to an argparse ``parser`` (the seed's helper)."""
        prefix = f"{prefix}." if prefix else ""
        for key, value in options.items():
            if isinstance(value, dict):
                self.add_options(parser, value, f"{prefix}{key}")
                continue
            datatype: Any
            if value is None:
                datatype = str
            elif isinstance(value, bool):
                datatype = str_to_bool
            elif isinstance(value, list):
                datatype = type(value[0]) if value else str
            else:
                datatype = type(value)
            parser.add_argument(f"--{prefix}{key}", help="Default: %(default)s", default=value,
                                nargs="*" if isinstance(value, list) else "?", type=datatype)

    # ---------------------------------------------------------------- lock, save
    def lock(self) -> None:
        """Make the options read-only (``PermissionError`` on writes)."""
        self._tree.lock()

    def unlock(self) -> None:
        """Make the options writable again (warns); a running experiment's options stay read-only."""
        if not isinstance(self._tree, OptionsDict):
            raise OptionsReadOnlyError(
                "Options().unlock(): a running experiment's options stay read-only (they are saved in "
                "<exp.dir>/options.yaml and in its record); set values in the options file or with --key VALUE")
        self._tree.unlock()

    def islocked(self) -> bool:
        return self._tree.islocked()

    def save(self, path_yaml: str | os.PathLike[str]) -> None:  # type: ignore[override]
        """Write the options (without ``path_opts``) to ``path_yaml`` as YAML, atomically."""
        Options.save_yaml_opts(self._tree, path_yaml)

    @staticmethod
    def load_yaml_opts(source: Any) -> OptionsDict:
        """The options of a YAML file (or a dict) with its ``__include__`` files merged; no command line."""
        return OptionsDict(_load_source(source, ()))

    @staticmethod
    def save_yaml_opts(opts: Mapping[Any, Any], path_yaml: str | os.PathLike[str]) -> None:
        """Write ``opts`` (without ``path_opts``) to ``path_yaml`` as YAML, atomically."""
        tree = _native._plain(opts)
        tree.pop("path_opts", None)
        atomic_write_text(path_yaml, yaml.safe_dump(tree, default_flow_style=False, sort_keys=False, allow_unicode=True))


# Activating a seed-API Options makes it current for bootstrap-repro code too (one stack).
Options._active = _native.Options._active
