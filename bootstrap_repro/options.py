"""Options: the experiment's option tree, as in bootstrap.pytorch.

An options file is YAML (safe loader).  ``__include__`` names a file or a list
of files, relative to the including file, merged in order with the file itself
merged last.  Every leaf becomes a typed command-line flag ``--a.b.c VALUE``
(lists take any number of values: ``--model.metric.topk 1 2 3``).

>>> opt = Options.load("examples/digits/options.yaml", ["--optimizer.lr", "0.05"])
>>> opt["optimizer.lr"], opt["engine"]["nb_epochs"]

Once a run starts the tree is frozen (read-only), saved as
``<exp.dir>/options.yaml`` and made current: ``Options()`` returns it.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bootstrap_repro._current import Activatable
from bootstrap_repro.errors import OptionsError, OptionsReadOnlyError
from bootstrap_repro.fileio import atomic_write_text

__all__ = ["Options", "OptionsDict", "OptionsList", "load_yaml", "read_yaml", "DEFAULTS", "flatten",
           "check_resume_options", "override_argv", "print_warnings", "is_saved_options"]

#: Platform-level keys every experiment has; the user's file is merged over them.
DEFAULTS: dict[str, Any] = {
    # max_untracked_mb: bound on the untracked files archived in <exp.dir>/repro/ (null: no bound);
    # env_keys: more variables whose values are inputs (in the cache key); env_ignore: read ones that are not;
    # secret_globs: files never archived nor hashed in clear (null: the built-in list);
    # max_input_gb: a larger input file is not fingerprinted (the run is then not cached);
    # max_inputs_archive_mb: ignored inputs of the code repo (modules, data) archived for rerun up to this size
    # inputs_ignore: path globs the run reads that are not inputs (a journal it appends to, a log)
    "exp": {"dir": None, "resume": None, "max_untracked_mb": 50, "env_keys": [], "env_ignore": [],
            "secret_globs": None, "max_input_gb": 20, "max_inputs_archive_mb": 50, "inputs_ignore": []},
    "misc": {"seed": 1337, "cuda": None, "deterministic": False},
    "engine": {
        "name": "default",
        "nb_epochs": 1,
        "print_freq": 10,
        "log_batches": False,
        "saving_criteria": [],
        "device": "auto",
        "nan_check": True,
        "progress_bar": True,
        "amp": "none",
        "compile": False,
        "channels_last": False,
        "hooks": [],
    },
    "dataset": {"train_split": "train", "eval_split": "val", "nb_threads": 0, "batch_size": 64},
    "view": [],
    "runtime": {
        "nproc_per_node": 1, "nnodes": 1, "node_rank": 0, "rdzv_endpoint": None, "rdzv_id": None,
        "name": "local",  # local | docker (runtimes/_docker.py) | slurm (runtimes/_slurm.py)
        "docker": {"image": None, "dockerfile": None, "build_args": [], "gpus": "none", "shm_size": "2g",
                   "env": [], "mounts": [], "network": None},
        "slurm": {"partition": None, "time": 60.0, "nodes": 1, "gpus_per_node": 0, "cpus_per_task": None,
                  "mem_gb": None, "account": None, "qos": None, "constraint": None, "setup": [], "additional": {},
                  "folder": None, "inner": "local", "signal_delay_s": 90, "max_requeues": 3},
    },
}

#: Keys that select an *action* on an experiment rather than describing it.
_ACTION_KEYS = ("exp.resume",)
_MISSING = object()


# --------------------------------------------------------------------------- containers
class _FrozenMixin:
    _frozen = False
    _path = ""  #: the dotted key of this subtree (``model.network``), set when the tree is frozen

    def _check(self, key: Any = None) -> None:
        """Refuse a write to a frozen tree, naming the key written (``key``: the one of this subtree)."""
        if self._frozen:
            name = ".".join(part for part in (self._path, "" if key is None else str(key)) if part)
            where = f" (a write to {name})" if name else ""
            one_value = bool(name) and (key is not None or isinstance(self, list))
            fix = f"set it in the options file or with --{name} VALUE" if one_value else \
                "set them in the file or on the command line"
            raise OptionsReadOnlyError(f"options are read-only once the run has started{where}; {fix}")

    def lock(self) -> None:
        """Make this subtree read-only (the seed's name for what a run does with :meth:`Options.freeze`)."""
        _freeze(self, self._path)

    def islocked(self) -> bool:
        """Whether this subtree is read-only."""
        return self._frozen


class OptionsDict(_FrozenMixin, dict):  # type: ignore[misc]
    """A ``dict`` of options that becomes read-only when its tree is frozen."""

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._check(key)
        super().__delitem__(key)

    def _blocked(self, *args: Any, **kwargs: Any) -> Any:
        self._check()

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._check()
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._check(key)
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:  # type: ignore[override]
        self._check()
        return super().pop(*args)

    def popitem(self) -> Any:
        self._check()
        return super().popitem()

    def clear(self) -> None:
        self._check()
        super().clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __getattr__(self, key: str) -> Any:
        """``opt['exp'].dir``: a key read as an attribute (the seed's style); methods win over keys."""
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no option {key!r} here (keys: {', '.join(map(str, self)) or 'none'})") from None

    def asdict(self) -> dict[str, Any]:
        """A deep, plain (mutable) copy: dicts and lists, no ``OptionsDict``."""
        return _plain(self)


class OptionsList(_FrozenMixin, list):  # type: ignore[misc]
    """A ``list`` of options that becomes read-only when its tree is frozen."""

    def _mut(name: str):  # type: ignore[no-untyped-def]  # noqa: N805
        def method(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._check()
            return getattr(list, name)(self, *args, **kwargs)

        method.__name__ = name
        return method

    for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
                  "insert", "pop", "remove", "clear", "sort", "reverse"):
        locals()[_name] = _mut(_name)
    del _name, _mut

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(v, memo) for v in self]


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return OptionsDict((str(k), _wrap(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return OptionsList(_wrap(v) for v in value)
    return value


def _freeze(value: Any, path: str = "") -> None:
    if isinstance(value, (OptionsDict, OptionsList)):
        value._frozen = True
        value._path = path
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            _freeze(v, f"{path}.{k}" if path else str(k))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = dict(copy.deepcopy(dict(base)))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` → ``{'a.b': 1}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --------------------------------------------------------------------------- YAML loading
def read_yaml(path: Path, shown: str | None = None, *, what: str = "options file",
              error: type[Exception] = OptionsError) -> Any:
    """Parse a YAML file (safe loader); every failure is one ``error`` line naming ``file:line:col``."""
    shown = str(path) if shown is None else shown
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or a device would block or never end
            raise error(f"{shown}: not a regular file; give a YAML {what}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{shown}: {what} not found; check the path") from None
    except IsADirectoryError:
        raise error(f"{shown}: is a directory, expected a YAML {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{shown}: cannot read {what} ({exc})") from None
    loader: Any = None
    node: Any = None
    try:
        loader = _LOADER(text)
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _too_big(node)
        if problem:
            raise error(f"{shown}: {problem}; the {what} is refused (check its anchors, aliases and nesting)")
        return loader.construct_document(node)
    except _DuplicateKeyError as exc:
        first, second = exc.first.start_mark.line + 1, exc.second.start_mark.line + 1
        raise error(f"{shown}: duplicate key {_node_path(node, exc.mapping, exc.second)} (lines {first} and {second}); "
                    f"YAML would keep only the last one: remove one of them") from None
    except RecursionError:
        raise error(f"{shown}: YAML nested too deeply (more than {MAX_YAML_DEPTH} levels); flatten the file") from None
    except ValueError as exc:  # Python's int parsing limit (4,300 digits), a bad base-60 or date value
        if isinstance(exc, error):
            raise
        if "integer string conversion" in str(exc):
            raise error(f"{shown}: YAML error: a number of more than 4300 digits; fix the file") from None
        raise error(f"{shown}: YAML value refused ({str(exc).splitlines()[0]}); fix the file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"{where}: YAML syntax error: {problem}; fix the file") from None
    except yaml.YAMLError as exc:
        raise error(f"{shown}: YAML error: {str(exc).splitlines()[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _DuplicateKeyError(yaml.YAMLError):
    """A key twice in one mapping (PyYAML would silently keep the last value)."""

    def __init__(self, mapping: yaml.MappingNode, first: yaml.Node, second: yaml.Node) -> None:
        super().__init__("duplicate key")
        self.mapping, self.first, self.second = mapping, first, second


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser when PyYAML has it (10x faster, same safe constructors), else the pure-Python one.

    Numbers are read as YAML 1.2 reads them: ``1e-3`` is a float (YAML 1.1, PyYAML's default, makes it
    the string ``'1e-3'``, which no ``lr`` accepts).  A key twice in one mapping is refused
    (:class:`_DuplicateKeyError`); a ``<<`` merge key's values are overridden as YAML says.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # a merge key (its values may be overridden), or an odd key PyYAML refuses itself
                key = self.construct_object(key_node)  # memoised: built once, as the mapping would
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue
                if first is not key_node:
                    raise _DuplicateKeyError(node, first, key_node)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_LOADER = _Loader
#: Bounds of a YAML file, checked on its node graph before any Python object is built: an alias
#: bomb (a few lines that expand to billions of values) or 5,000 nested brackets fail in milliseconds.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 100


def _too_big(root: yaml.Node) -> str | None:
    """Why the document of ``root`` is too large once its aliases are expanded, or None."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            if len(stack) > MAX_YAML_VALUES:
                return f"more than {MAX_YAML_VALUES:,} values"
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
        depths[id(node)] = 1 + max((depths.get(id(c), 0) for c in children), default=0)
        if sizes[id(node)] > MAX_YAML_VALUES:
            return f"expands to more than {MAX_YAML_VALUES:,} values"
        if depths[id(node)] > MAX_YAML_DEPTH:
            return f"nested more than {MAX_YAML_DEPTH} levels deep"
    return None


def _node_path(root: yaml.Node, target: yaml.Node, key_node: yaml.Node) -> str:
    """The dotted path (``engine.nb_epochs``, ``view[0].x``) of key ``key_node`` of mapping ``target`` under ``root``."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node is target:
            return f"{path}.{key_node.value}" if path else str(key_node.value)
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, f"{path}.{k.value}" if path else str(k.value)) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node.value))
    return str(key_node.value)


def _read_yaml(path: Path, shown: str) -> dict[str, Any]:
    data = read_yaml(path, shown)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(f"{shown}: expected a mapping of options at the top level, got {type(data).__name__}")
    return data


def load_yaml(path: str | os.PathLike[str], _chain: tuple[Path, ...] = (),
              origins: dict[str, str] | None = None) -> dict[str, Any]:
    """Load an options file, resolving ``__include__`` recursively.

    ``origins`` (a dict to fill): each leaf's dotted key -> the file whose value the merged tree
    holds (``engine.nb_epochs`` -> ``base.yaml`` when only an included file sets it), so that an
    error names the file where the key is written.
    """
    shown = str(path)
    real = Path(os.path.realpath(path))  # never raises, even on a symlink loop (read_yaml then says so)
    if real in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, real))
        raise OptionsError(f"{_chain[-1]}: __include__ cycle {cycle}; remove one of these includes")
    data = _read_yaml(Path(path), shown)
    includes = data.pop("__include__", None)
    if includes is None:
        if origins is not None:
            _note_origins(origins, data, shown, {})
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise OptionsError(f"{shown}: __include__ must be a file name or a list of file names, got {includes!r}")
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = Path(path).parent / inc
        if not inc_path.exists():
            raise OptionsError(
                f"{shown}: __include__ '{inc}' not found (looked for {inc_path}); "
                f"includes are relative to the including file"
            )
        merged = merge(merged, load_yaml(inc_path, (*_chain, real), origins))
    if origins is not None:
        _note_origins(origins, data, shown, merged)
    return merge(merged, data)


def _note_origins(origins: dict[str, str], data: Mapping[str, Any], file: str, base: Mapping[str, Any],
                  prefix: str = "") -> None:
    """Record ``file`` as the origin of each leaf of ``data``, merged over ``base`` (as :func:`merge` does)."""
    for k, v in data.items():
        key = f"{prefix}{k}"
        below = base.get(k) if isinstance(base, Mapping) else None
        if isinstance(v, Mapping) and v:
            origins.pop(key, None)  # a mapping now, where an included file had a value
            _note_origins(origins, v, file, below if isinstance(below, Mapping) else {}, key + ".")
        elif isinstance(v, Mapping) and isinstance(below, Mapping) and below:
            continue  # an empty mapping merged over one: the included file's values stay
        else:
            if isinstance(below, Mapping) and below:  # a value replaces an included mapping: rare, scan
                for old in [o for o in origins if o.startswith(key + ".")]:
                    del origins[old]
            origins[key] = file


# --------------------------------------------------------------------------- CLI values
_BOOL = {"true": True, "yes": True, "on": True, "1": True,
         "false": False, "no": False, "off": False, "0": False}


def _type_name(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, list):
        inner = _list_elem_type(value)
        return f"list[{inner.__name__ if inner else 'any'}]"
    return type(value).__name__


def _list_elem_type(value: Sequence[Any]) -> type | None:
    types = {type(v) for v in value}
    if types == {int} or types == {float} or types == {str} or types == {bool}:
        return types.pop()
    if types == {int, float}:
        return float
    return None


def _parse_scalar(key: str, raw: str, default: Any, want: type | None) -> Any:
    if want is bool:
        if raw.lower() in _BOOL:
            return _BOOL[raw.lower()]
        raise OptionsError(f"--{key}: expected a bool (true/false), got {raw!r}")
    if want is int:
        try:
            return int(raw)
        except ValueError:
            raise OptionsError(f"--{key}: expected an int, got {raw!r}") from None
    if want is float:
        try:
            return float(raw)
        except ValueError:
            raise OptionsError(f"--{key}: expected a float, got {raw!r}") from None
    if want is str:
        return raw
    try:  # untyped (null default or mixed list): read it as a YAML scalar
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw
    return value if not isinstance(value, (dict, list)) else raw


def _typed(key: str, values: list[str], default: Any) -> Any:
    if isinstance(default, list):
        elem = _list_elem_type(default)
        return [_parse_scalar(key, v, default, elem) for v in values]
    want = type(default) if default is not None else None
    if not values:
        if want is bool:
            return True
        if want in (int, float):  # a string flag alone means null (e.g. --dataset.eval_split: no eval)
            raise OptionsError(f"--{key}: expected a value after it, e.g. --{key} {default}")
        return None
    if len(values) > 1:
        raise OptionsError(f"--{key}: expected one value, got {len(values)} ({' '.join(values)})")
    return _parse_scalar(key, values[0], default, want)


def split_overrides(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``['--a.b', '1', '--c=x']`` → ``[('a.b', ['1']), ('c', ['x'])]``."""
    pairs: list[tuple[str, list[str]]] = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2 and not _is_number(tok):
            key, eq, val = tok[2:].partition("=")
            if not key:
                raise OptionsError(f"{tok}: no option name before '='; give options as --key.path VALUE "
                                   f"(e.g. --engine.nb_epochs 5)")
            pairs.append((key, [val] if eq else []))
        elif pairs:
            pairs[-1][1].append(tok)
        else:
            raise OptionsError(f"unexpected argument {tok!r}; options are given as --key.path VALUE")
    return pairs


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- Options
class Options(Activatable):
    """The option tree of one experiment.

    ``Options()`` (no arguments) returns the current experiment's options.
    ``opt['engine']`` returns a ``dict`` subtree, ``opt['exp.dir']`` a dotted leaf.
    """

    def __init__(self, tree: Mapping[str, Any], source: str | None = None) -> None:
        self._tree: OptionsDict = _wrap(tree)
        self.source = source
        #: The explicit ``--key value`` overrides applied so far (``{key: value}``, the last value wins).
        self.overrides: dict[str, Any] = {}
        #: Each key read from a file -> that file (``__include__``d files included); None: not loaded from files.
        self.origins: dict[str, str] | None = None
        #: The warning lines of the last :meth:`check` (near misses of platform keys), printed once.
        self.warnings: list[str] = []

    # ---- construction
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        overrides: Sequence[str] = (),
        *,
        defaults: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> Options:
        """Load ``path`` over :data:`DEFAULTS` and apply ``--key value`` overrides.

        ``check`` (default): refuse a platform option of the wrong type or range (:meth:`check`).
        """
        origins: dict[str, str] = {}
        tree = merge(DEFAULTS if defaults is None else defaults, load_yaml(path, origins=origins))
        opt = cls(tree, source=str(path))
        opt.origins = origins
        opt.apply_overrides(overrides)
        if check:
            opt.check()
        return opt

    def check(self) -> None:
        """Raise a one-line :class:`OptionsError` when an option has the wrong type or range (``_schema``).

        Checked once: a tree that passed as it is now (:meth:`load` checks it, :func:`~bootstrap_repro.run.run`
        asks again) is not checked again.  A near miss of a platform key that is not refused
        (``_schema.near_misses``) is one ``warning:`` line on stderr, printed once per command
        (:func:`print_warnings`), and kept in :attr:`warnings`.
        """
        tree = self.as_dict()
        token = (os.getcwd(), repr(tree))  # exp.dir's checks resolve relative paths
        if getattr(self, "_checked", None) == token:
            return
        from bootstrap_repro import _schema

        exp = tree.get("exp")
        lenient = bool(isinstance(exp, Mapping) and exp.get("resume")) or is_saved_options(self.source)
        self.warnings = _schema.check(tree, overrides=self.overrides, source=self.source,
                                      origins=getattr(self, "origins", None), lenient=lenient)
        print_warnings(self.warnings, self.source)
        self._checked = token

    def apply_overrides(self, argv: Sequence[str]) -> dict[str, Any]:
        """Apply ``--a.b VALUE`` flags; returns the changed ``{key: value}``."""
        leaves = flatten(self._tree)
        changed: dict[str, Any] = {}
        for key, values in split_overrides(argv):
            if key not in leaves:
                if any(k.startswith(key + ".") for k in leaves):
                    raise OptionsError(f"--{key}: is a section, not a value; set one of its keys, e.g. --{next(k for k in leaves if k.startswith(key + '.'))}")
                raise OptionsError(f"--{key}: unknown option{_suggest(key, leaves)} (`-h` lists them all)")
            value = _typed(key, values, leaves[key])
            self[key] = value
            changed[key] = value
            self.overrides[key] = copy.deepcopy(value)
        return changed

    # ---- access
    def _node(self, key: str) -> tuple[Any, str]:
        parts = key.split(".")
        node: Any = self._tree
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(key)
            node = node[part]
        if not isinstance(node, Mapping):
            raise KeyError(key)
        return node, parts[-1]

    def __getitem__(self, key: str) -> Any:
        if key in self._tree:
            return self._tree[key]
        node, last = self._node(key)
        if last not in node:
            raise KeyError(key)
        return node[last]

    def __setitem__(self, key: str, value: Any) -> None:
        parts = key.split(".")
        node = self._tree
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], Mapping):
                node[part] = OptionsDict()
            node = node[part]
        node[parts[-1]] = _wrap(value)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def get(self, key: str, default: Any = None) -> Any:
        """``opt.get('a.b', default)``."""
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, key: str) -> Any:
        """``opt.exp.dir``: a top-level option read as an attribute; methods and attributes win over keys."""
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._tree[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute or option {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree)

    def keys(self) -> Any:
        return self._tree.keys()

    def values(self) -> Any:
        return self._tree.values()

    def items(self) -> Any:
        return self._tree.items()

    @property
    def path_opts(self) -> str | None:
        """The options file these options were loaded from (the seed's ``path_opts``), or None."""
        return self.source

    def __len__(self) -> int:
        return len(self._tree)

    def __repr__(self) -> str:
        return f"Options({self.source or 'dict'}: {dict(self._tree)!r})"

    # ---- lifecycle
    def freeze(self) -> Options:
        """Make the tree read-only (done when the run starts)."""
        _freeze(self._tree)
        return self

    @property
    def frozen(self) -> bool:
        return self._tree._frozen

    def lock(self) -> None:
        """The seed's name for :meth:`freeze`."""
        self.freeze()

    def islocked(self) -> bool:
        """The seed's name for :attr:`frozen`."""
        return self.frozen

    def as_dict(self) -> dict[str, Any]:
        """A deep, plain (mutable) copy of the tree."""
        return _plain(self._tree)

    asdict = as_dict  # the seed's spelling

    def copy(self) -> Options:
        """A mutable copy (with the same explicit :attr:`overrides` and :attr:`origins`)."""
        new = Options(self.as_dict(), source=self.source)
        new.overrides = copy.deepcopy(self.overrides)
        origins = getattr(self, "origins", None)
        new.origins = None if origins is None else dict(origins)
        return new

    def to_yaml(self, *, drop_actions: bool = True) -> str:
        """The tree as YAML; ``exp.resume`` is written as null (it is an action)."""
        tree = self.as_dict()
        if drop_actions:
            for key in _ACTION_KEYS:
                head, _, last = key.rpartition(".")
                node = tree
                for p in head.split("."):
                    node = node.get(p, {}) if isinstance(node, dict) else {}
                if isinstance(node, dict) and last in node:
                    node[last] = None
        return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False, allow_unicode=True)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the resolved options atomically."""
        atomic_write_text(path, self.to_yaml())

    def help_text(self) -> str:
        """One line per option: flag, type and current value."""
        leaves = flatten(self._tree)
        width = max((len(k) for k in leaves), default=0) + 2
        lines = [f"options (from {self.source or 'defaults'}); override any with --key VALUE:"]
        for key, value in leaves.items():
            shown = yaml.safe_dump(_plain(value), default_flow_style=True, width=float("inf")).strip()
            if shown.endswith("\n...") or shown.endswith("..."):
                shown = shown.replace("\n...", "").removesuffix("...").strip()
            lines.append(f"  --{key:<{width}} {shown:<20} ({_type_name(value)})")
        return "\n".join(lines)


# --------------------------------------------------------------------------- warnings, suggestions
#: Set in the processes that a command starts to run the experiment it has checked (and warned about)
#: already: a container (``record.CONTAINER_ENV``), a Slurm job (``record.SLURM_ENV``), a sweep's trial
#: (``sweep.TRIAL_ENV``), a torchrun worker.  Those do not print the options' warnings again.
INNER_PROCESS_ENV = ("BOOTSTRAP_REPRO_CONTAINER", "BOOTSTRAP_REPRO_SLURM", "BOOTSTRAP_REPRO_TRIAL",
                     "TORCHELASTIC_RUN_ID")
_printed: set[tuple[str | None, str]] = set()  # (options file, line): a sweep loads its base file for each trial


def print_warnings(lines: Sequence[str], source: str | None = None) -> None:
    """Print each ``warning:`` line on stderr once per command: once per process for an options file,
    and not at all in a process that the command started to run the experiment (:data:`INNER_PROCESS_ENV`)."""
    if not lines or any(os.environ.get(name) for name in INNER_PROCESS_ENV):
        return
    where = os.path.realpath(source) if source else None
    for line in lines:
        if (where, line) not in _printed:
            _printed.add((where, line))
            print(f"warning: {line}", file=sys.stderr)


#: Files of an experiment dir: an options file beside one of them is an experiment's saved options.
_EXP_DIR_FILES = ("logs.json", "logs.txt", "ckpt_last_engine.pth.tar", "repro/record.json")


def is_saved_options(source: str | os.PathLike[str] | None) -> bool:
    """Whether ``source`` is the saved options of an experiment dir (its ``options.yaml``, a segment's copy
    under ``repro/``): a run accepted them already, so a near miss of a platform key only warns."""
    if not source:
        return False
    try:
        folder = Path(os.path.realpath(source)).parent
        if folder.name == "repro":
            folder = folder.parent
        return any((folder / name).exists() for name in _EXP_DIR_FILES)
    except (OSError, ValueError):
        return False


def _suggest(key: str, leaves: Mapping[str, Any]) -> str:
    """``"; did you mean --KEY?"`` for an unknown flag, case ignored (``--engine.NB_EPOCHS``), or ``""``."""
    lower = {k.lower(): k for k in leaves}
    close = [key.lower()] if key.lower() in lower else difflib.get_close_matches(key.lower(), list(lower), 1, 0.6)
    return f"; did you mean --{lower[close[0]]}?" if close else ""


# --------------------------------------------------------------------------- resume
#: Keys that never count as differences: where the experiment is and which checkpoint to resume.
RESUME_IGNORED_KEYS = frozenset({"exp.dir", "exp.resume"})
_ABSENT_KEY = object()


def _same(a: Any, b: Any) -> bool:
    """Equal values, with ``True`` and ``1`` told apart (``1`` and ``1.0`` are the same number)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (an odd value type: compare as different)
        return False


def _shown(value: Any) -> str:
    if value is _ABSENT_KEY:
        return "absent"
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
    return text.replace("\n...", "").removesuffix("...").strip()


def _flag(key: str, value: Any) -> str:
    """``--key VALUE`` as typed on a shell command line (the CLI parses it back to ``value``)."""
    def word(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        return shlex.quote(str(v))

    if isinstance(value, (list, tuple)):
        return " ".join([f"--{key}", *(word(v) for v in value)])
    return f"--{key} {word(value)}"


def override_argv(overrides: Mapping[str, Any]) -> list[str]:
    """``{key: value}`` as the ``--key VALUE ...`` tokens that :meth:`Options.apply_overrides` reads back."""
    return [tok for k, v in overrides.items() for tok in shlex.split(_flag(k, v))]


def check_resume_options(options: Options, exp_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Refuse a resume whose options differ from ``<exp_dir>/options.yaml`` other than by explicit overrides.

    Returns the explicit overrides (``options.overrides``) that change a saved value,
    ``{key: value}``.  Raises :class:`OptionsError` (one line) for any other
    difference.  ``exp.dir`` and ``exp.resume`` never count; a key the saved file
    lacks counts as equal when the value here is its :data:`DEFAULTS` value (an
    experiment saved before that default existed).  A missing or unreadable saved
    file is not reported here.
    """
    saved_path = Path(exp_dir) / "options.yaml"
    try:
        saved = flatten(load_yaml(saved_path))
    except (OptionsError, OSError):
        return {}
    here = flatten(options.as_dict())
    defaults = flatten(DEFAULTS)
    explicit = getattr(options, "overrides", None) or {}

    def differs(key: str) -> bool:
        a, b = here.get(key, _ABSENT_KEY), saved.get(key, _ABSENT_KEY)
        if a is _ABSENT_KEY or b is _ABSENT_KEY:
            present = b if a is _ABSENT_KEY else a
            return key not in defaults or not _same(present, defaults[key])
        return not _same(a, b)

    keys = [*here, *(k for k in saved if k not in here)]
    changed = [k for k in keys if k not in RESUME_IGNORED_KEYS and differs(k)]
    allowed = {k: here[k] for k in changed if k in explicit and k in here}
    refused = [k for k in changed if k not in allowed]
    if refused:
        source = options.source or "these options"
        what = "; ".join(
            f"{k} ({_shown(here.get(k, _ABSENT_KEY))} here, {_shown(saved.get(k, _ABSENT_KEY))} saved)" for k in refused)
        fix = f"resume with -o {saved_path}"
        if all(k in here for k in refused):  # a key absent here cannot be given as a flag
            flags = " ".join(_flag(k, here[k]) for k in refused)
            fix += f", or pass each new value explicitly ({flags})"
        raise OptionsError(
            f"exp.resume: {source} differs from {saved_path} (the experiment's options) in {what}; {fix}")
    return allowed
