"""The sweep file: what to run, what to optimise and the search space, checked before anything starts.

.. code-block:: yaml

    sweep:
      options: examples/digits/options.yaml   # base options file (relative to the current dir)
      dir: logs/sweeps/lr                     # trials land in <dir>/trials/<number>/
      objective: eval_epoch.acctop1           # <train|eval>_epoch.<name>, logged every epoch
      direction: maximize                     # or minimize
      n_trials: 20
      jobs: 2                                 # parallel local workers
      sampler: {name: tpe, seed: 0}           # tpe | random | grid | cmaes
      pruner: {name: median, n_warmup_steps: 2}   # median | hyperband | none
      storage: null                           # a file in <dir>; or postgresql://...
      max_retries: 2                          # a trial killed by a signal (or lost) is retried this many times
    params:
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      model.network.hidden: {type: int, low: 16, high: 256}
      optimizer.name: {type: categorical, choices: [sgd, adam]}
    enqueue:                                  # optional: points to try first
      - {optimizer.lr: 0.001, optimizer.name: adam}
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from bootstrap_repro.errors import OptionsError, ReproError, did_you_mean
from bootstrap_repro.options import Options, flatten, read_yaml
from bootstrap_repro.sweep._algorithms import AlgoSpec, check_algorithms, make_pruner, make_sampler, parse_algo
from bootstrap_repro.sweep._errors import SweepError
from bootstrap_repro.sweep._trial import MAX_ATTEMPTS

if TYPE_CHECKING:
    import optuna

__all__ = ["ParamSpec", "SweepSpec", "load_sweep", "parse_sweep", "parse_count", "check_sweep_dir", "OBJECTIVE_RE",
           "DIRECTIONS", "DEFAULT_MAX_RETRIES", "MAX_TRIALS", "MAX_RETRIES"]

SWEEP_KEYS = ("options", "dir", "name", "objective", "direction", "n_trials", "jobs", "sampler", "pruner", "storage",
              "max_retries")
#: ``sweep.max_retries`` when the file does not set it: a killed trial runs at most 3 times.
DEFAULT_MAX_RETRIES = MAX_ATTEMPTS - 1
TOP_KEYS = ("sweep", "params", "enqueue")
#: Parallel trials (``sweep.jobs``) per CPU of this machine at most.
JOBS_PER_CPU = 4
#: ``sweep.n_trials`` (``--n-trials``) at most: beyond it a typo (``1e20``) would run for ever.
MAX_TRIALS = 10**6
#: ``sweep.max_retries`` at most.
MAX_RETRIES = 100
PARAM_TYPES = ("float", "int", "categorical")
_PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
               "categorical": ("type", "choices")}
DIRECTIONS = ("maximize", "minimize")
#: ``eval_epoch.acctop1`` → mode ``eval``, metric ``acctop1``.
OBJECTIVE_RE = re.compile(r"^(train|eval)_epoch\.([^.\s][^\s]*)$")
STORAGE_SCHEMES = ("postgresql://", "postgresql+psycopg2://")

Scalar = None | bool | int | float | str


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A number that is a finite float (not NaN, not an infinity, not an int beyond floats)."""
    try:
        return math.isfinite(float(v))
    except (OverflowError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class ParamSpec:
    """One searched option: ``optimizer.lr: {type: float, low: 1e-4, high: 0.1, log: true}``."""

    key: str
    type: str
    low: float = 0  #: int for an int param; unused for a categorical one
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()

    @classmethod
    def parse(cls, key: str, raw: Any) -> ParamSpec:
        where = f"params.{key}"
        if not isinstance(raw, Mapping):
            raise SweepError(f"{where}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}, got {raw!r}")
        if "type" not in raw and raw and all(isinstance(v, Mapping) for v in raw.values()):  # {optimizer: {lr: {...}}}
            path, node = [key], raw
            while isinstance(node, Mapping) and "type" not in node and node \
                    and all(isinstance(v, Mapping) for v in node.values()):
                first = next(iter(node))
                path.append(str(first))
                node = node[first]
            raise SweepError(f"{where}: write the option as a dotted key (params: {{{'.'.join(path)}: {{...}}}})")
        kind = raw.get("type")
        if kind not in PARAM_TYPES:
            hint = did_you_mean(str(kind), PARAM_TYPES) if isinstance(kind, str) else ""
            raise SweepError(f"{where}.type: expected one of {', '.join(PARAM_TYPES)}, got {kind!r}{hint}")
        for k in raw:
            if k not in _PARAM_KEYS[kind]:
                raise SweepError(f"{where}.{k}: unknown key for a {kind} param{did_you_mean(str(k), _PARAM_KEYS[kind])} "
                                 f"(valid: {', '.join(_PARAM_KEYS[kind])})")
        if kind == "categorical":
            return cls._categorical(key, raw.get("choices"))
        return cls._range(key, kind, raw)

    @classmethod
    def _categorical(cls, key: str, choices: Any) -> ParamSpec:
        where = f"params.{key}.choices"
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{where}: expected a non-empty list of values, got {choices!r}")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise SweepError(f"{where}: choices must be null, bool, int, float or str, got {c!r}")
            if isinstance(c, float) and not math.isfinite(c):
                raise SweepError(f"{where}: choices must be finite numbers, got {c!r}")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise SweepError(f"{where}: choices must be distinct, got {choices!r}")
        return cls(key, "categorical", choices=tuple(choices))

    @classmethod
    def _range(cls, key: str, kind: str, raw: Mapping[str, Any]) -> ParamSpec:
        where = f"params.{key}"
        check = _is_int if kind == "int" else _is_number
        low, high, step, log = raw.get("low"), raw.get("high"), raw.get("step"), raw.get("log", False)
        for name, v in (("low", low), ("high", high)):
            if not check(v):
                raise SweepError(f"{where}.{name}: expected {'an int' if kind == 'int' else 'a number'}, got {v!r}")
            if kind == "float" and not _finite(v):  # .inf, .nan (or 1e400) would be drawn as such
                raise SweepError(f"{where}.{name}: expected a finite number, got {v!r}")
        if not isinstance(log, bool):
            raise SweepError(f"{where}.log: expected true or false, got {log!r}")
        if step is not None and (not check(step) or not step > 0 or not _finite(step)):
            raise SweepError(f"{where}.step: expected a positive {'int' if kind == 'int' else 'number'}, got {step!r}")
        if not low <= high:
            raise SweepError(f"{where}: `low <= high` must hold, but got (low={low}, high={high})")
        if log and low <= 0:
            raise SweepError(f"{where}: `low > 0` must hold for log scale, but got (low={low}, high={high})")
        if log and step is not None:
            raise SweepError(f"{where}: `step` and `log: true` cannot be used together, but got (step={step}, log=true)")
        if kind == "float":
            return cls(key, kind, float(low), float(high), log, None if step is None else float(step))
        return cls(key, kind, int(low), int(high), log, None if step is None else int(step))

    # ---- views of the spec
    def as_dict(self) -> dict[str, Any]:
        """The spec as stored in the study (compared on resume)."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna import distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.trial.Trial) -> Any:
        """Draw this param for ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return any(type(c) is type(value) and c == value for c in self.choices) or (
                _is_number(value) and any(_is_number(c) and c == value for c in self.choices))
        if self.type == "int" and not _is_int(value):
            return False
        return _is_number(value) and self.low <= value <= self.high

    def grid_values(self) -> list[Any] | None:
        """Every value of the range, or None for a float range without a step."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(n)]

    def samples(self) -> list[Any]:
        """Values that must all be valid for the option (bounds or choices)."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def format_value(value: Any) -> list[str]:
    """The command-line words after ``--key`` for ``value``."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def override_args(key: str, value: Any) -> list[str]:
    """``('optimizer.lr', 0.01)`` → ``['--optimizer.lr', '0.01']``."""
    return [f"--{key}", *format_value(value)]


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: the base options, the search space and how to run it."""

    options_path: Path
    dir: Path
    name: str
    objective: str
    direction: str
    n_trials: int
    jobs: int
    sampler: AlgoSpec
    pruner: AlgoSpec
    storage: str | None
    params: tuple[ParamSpec, ...]
    enqueue: tuple[dict[str, Any], ...] = ()
    #: how many times a trial whose process was killed by a signal (or lost with its driver) is retried
    max_retries: int = DEFAULT_MAX_RETRIES
    overrides: tuple[str, ...] = ()  #: option overrides applied to every trial
    source: Path | None = None  #: the sweep file
    base: Options | None = field(default=None, compare=False, repr=False)  #: the base options (with overrides)

    @property
    def mode(self) -> str:
        """``eval`` or ``train``: the split whose epoch values hold the objective."""
        return self.objective.split("_epoch.", 1)[0]

    @property
    def metric(self) -> str:
        """The objective without its ``<mode>_epoch.`` prefix (a key of the engine's epoch metrics)."""
        return self.objective.split("_epoch.", 1)[1]

    def space(self) -> dict[str, Any]:
        """What a resumed study must share with this file (stored in the study's user attrs)."""
        return {"params": {p.key: p.as_dict() for p in self.params},
                "objective": self.objective, "direction": self.direction}

    def trial_dir(self, number: int) -> Path:
        return self.dir / "trials" / f"{number:04d}"

    def trial_overrides(self, params: Mapping[str, Any]) -> list[str]:
        out = list(self.overrides)
        for p in self.params:
            if p.key in params:
                out += override_args(p.key, params[p.key])
        return out


# --------------------------------------------------------------------------- parsing
def _read(path: Path) -> dict[str, Any]:
    try:
        data = read_yaml(path, what="sweep file", error=SweepError)
    except SweepError:
        raise
    except ValueError as exc:  # what YAML's reader lets through: an int of more than 4300 digits (Python's limit)
        reason = "a number of more than 4300 digits" if "integer string conversion" in str(exc) else \
            " ".join(str(exc).split())[:120]
        raise SweepError(f"{path}: YAML error: {reason}; fix the file") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping with `sweep:` and `params:` at the top level")
    return data


def _positive_int(value: Any, where: str, high: int | None = None) -> int:
    if not _is_int(value) or value < 1:
        raise SweepError(f"{where}: expected a positive int, got {value!r}")
    if high is not None and value > high:
        raise SweepError(f"{where}: must be <= {high}, got {value!r}")
    return int(value)


def _non_negative_int(value: Any, where: str, high: int | None = None) -> int:
    if not _is_int(value) or value < 0:
        raise SweepError(f"{where}: expected a whole number >= 0, got {value!r}")
    if high is not None and value > high:
        raise SweepError(f"{where}: must be <= {high}, got {value!r}")
    return int(value)


#: Python's limit on the digits of an int read from text (``sys.get_int_max_str_digits``).
_MAX_DIGITS = 4300


def parse_count(flag: str, value: str | None) -> int | None:
    """The int of a count flag (``--n-trials 20``, ``--jobs 2``), or None when it is not given.

    Only digits (``'²'``, ``'1e3'``, ``'-1'`` are refused); the range is checked with the sweep file
    (:func:`parse_sweep`): ``--n-trials 100000000000000000000`` is ``--n-trials: must be <= 1000000, got ...``.
    """
    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,%d}" % _MAX_DIGITS, text):  # (str.isdigit() also takes '²', which int() refuses)
        raise SweepError(f"{flag}: expected a positive int, got {value!r}")
    return int(text)


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_sweep_dir(value: Any, where: str = "sweep.dir") -> Path:
    """``sweep.dir`` as a path, once it can be (or is) a writable dir; a one-line :class:`SweepError` otherwise.

    The checks of ``exp.dir`` (no NUL, not too long, not under /proc, /sys or /dev), then: no control
    character (a newline in it would split every line that names it), no file where a directory of
    the path is needed, and the nearest existing directory writable.  Nothing is created.
    """
    from bootstrap_repro._schema import check_dir_path  # the exp.dir path check (shared)

    if not isinstance(value, str) or not value.strip():
        raise SweepError(f"{where}: expected a path, got {value!r}")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    try:
        check_dir_path(value)
    except ValueError as exc:
        raise SweepError(f"{where}: {exc}, got {shown}") from None
    if _has_control(value):
        raise SweepError(f"{where}: a path cannot hold a control character (newline, tab...), got {shown}")
    path = Path(value)
    target = Path(os.path.abspath(value))
    probe = target
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        raise SweepError(f"{where}: cannot create {path}: {probe} is a broken symbolic link; fix it or choose "
                         f"another sweep.dir")
    if not probe.is_dir():
        if probe == target:
            raise SweepError(f"{where}: {path} is a file, not a directory; choose another sweep.dir")
        raise SweepError(f"{where}: cannot create {path}: {probe} is a file, not a directory; choose another sweep.dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = f"{path} is not writable" if probe == target else f"cannot create {path}: {probe} is not writable"
        raise SweepError(f"{where}: {what} (permission denied); choose a sweep.dir in a writable directory")
    return path


def _check_storage(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(STORAGE_SCHEMES):
        raise SweepError(
            f"{where}: expected null (a file storage in sweep.dir) or a postgresql://user:password@host/db URL, "
            f"got {value!r}"
        )
    return value


# --------------------------------------------------------------------------- params vs the base options
def _signature_keys(cls: Any, hidden: tuple[str, ...]) -> set[str]:
    import inspect

    return {p.name for p in inspect.signature(cls).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in hidden}


def _builtin_keys(section: str, base: Options) -> tuple[str, set[str]] | None:
    """``(what, keys)``: the options the built-in class that ``section`` names takes (``("optimizer 'sgd'",
    {lr, momentum, ...})``), exactly as the run maps them to its arguments; None for a plugin's section, a
    section naming no built-in, or when the classes cannot be imported here (no torch)."""
    node = base.get(section) if section else None
    if not isinstance(node, Mapping) or node.get("import"):
        return None
    name = node.get("name")
    try:
        if section == "optimizer":
            from bootstrap_repro.optimizers._factory import _OWN_KEYS, OPTIMIZERS

            if name not in OPTIMIZERS:
                return None
            return f"optimizer {name!r}", _signature_keys(OPTIMIZERS[name], ("params",)) | set(_OWN_KEYS)
        if section == "optimizer.lr_scheduler":
            if base.get("optimizer.import"):
                return None
            from bootstrap_repro.optimizers._factory import _scheduler_class

            cls = _scheduler_class(name, f"{section}.name")
            return (f"lr_scheduler {name!r}",
                    _signature_keys(cls, ("optimizer", "last_epoch", "verbose")) | {"name", "last_epoch"})
        if section in ("model.network", "model.criterion", "model.metric"):
            if base.get("model.import"):
                return None
            from torch import nn

            from bootstrap_repro.models import _factory as models

            registry = {"model.network": models.NETWORKS, "model.criterion": models.CRITERIONS,
                        "model.metric": models.METRICS}[section]
            cls = models._resolve(section, registry, name)
            extra = {"target_key"} if isinstance(cls, type) and issubclass(cls, nn.modules.loss._Loss) else set()
            part = section.rsplit(".", 1)[1]
            return f"{part} {name!r}", _signature_keys(cls, ("self",)) | {"name", "import"} | extra
        if section == "dataset":
            from bootstrap_repro.datasets._factory import COMMON_KEYS, DATASETS

            if name not in DATASETS:
                return None
            return f"dataset {name!r}", set(COMMON_KEYS) | set(DATASETS[name].option_args)
    except (ImportError, ReproError, TypeError, ValueError):  # no torch here, or a name the run would refuse
        return None
    return None


def _section_keys(section: str, base: Options) -> set[str]:
    """The keys the platform reads in ``section`` (its schema), whatever the built-in class."""
    from bootstrap_repro import _schema

    if section in _schema.KNOWN_KEYS:
        return set(_schema.KNOWN_KEYS[section])
    if section == "optimizer.lr_scheduler":
        return set(_schema._fields(_schema.Scheduler))
    part = section.removeprefix("model.")
    name = base.get(f"{section}.name")
    schema = _schema.BUILTIN_PARTS.get(part, {}).get(name) if isinstance(name, str) else None
    return set(_schema._fields(schema)) | {"name", "import"} if schema is not None else set()


def _unknown_param(key: str, base: Options, where_file: Any) -> str:
    """The error line of ``params.<key>`` that is not an option of the base file (nor accepted as an override)."""
    from bootstrap_repro._schema import typo

    where = f"params.{key}"
    section, _, last = key.rpartition(".")
    node = base.get(section) if section else base.as_dict()
    in_file = {str(k) for k in node} if isinstance(node, Mapping) else set()
    builtin = _builtin_keys(section, base)
    if builtin is not None and last in builtin[1]:
        return (f"{where}: not in {where_file}, and a trial can only change options the file sets; "
                f"{builtin[0]} takes {last}: add it under {section} in {where_file} to search it")
    known = in_file | (builtin[1] if builtin is not None else _section_keys(section, base))
    near = typo(last, known)
    hint = f"; did you mean {section + '.' if section else ''}{near}?" if near else ""
    note = f", and {builtin[0]} has no option {last!r}" if builtin is not None and not near else ""
    return f"{where}: unknown option in {where_file}{note}{hint} (`bootstrap-repro run -o {where_file} -h` lists them)"


#: Built-in name keys -> the import keys that replace the name (a plugin: its names are its own).
_NAME_KEYS: dict[str, tuple[str, ...]] = {
    "optimizer.name": ("optimizer.import",),
    "optimizer.lr_scheduler.name": ("optimizer.import",),
    "dataset.name": ("dataset.import",),
    "engine.name": ("engine.import",),
    "model.name": ("model.import",),
    "model.network.name": ("model.import", "model.network.import"),
    "model.criterion.name": ("model.import", "model.criterion.import"),
    "model.metric.name": ("model.import", "model.metric.import"),
}


def _check_name(key: str, value: Any, trial: Options) -> None:
    """Resolve built-in name ``value`` of ``key`` as the run will (raises its one-line :class:`OptionsError`)."""
    from bootstrap_repro import plugins

    if key == "optimizer.name":
        from bootstrap_repro.optimizers._factory import OPTIMIZERS

        plugins.resolve(OPTIMIZERS, value, key)
    elif key == "optimizer.lr_scheduler.name":
        from bootstrap_repro.optimizers._factory import _scheduler_class

        _scheduler_class(value, key)
    elif key == "dataset.name":
        from bootstrap_repro.datasets._factory import DATASETS

        plugins.resolve(DATASETS, value, key)
    elif key == "engine.name":
        from bootstrap_repro.engines._factory import ENGINES

        plugins.resolve(ENGINES, value, key)
    elif key == "model.name":
        from bootstrap_repro.models._factory import MODELS

        plugins.resolve(MODELS, value, key)
    else:
        from bootstrap_repro.models import _factory as models

        part = key.split(".")[1]
        models._resolve(f"model.{part}", getattr(models, {"network": "NETWORKS", "criterion": "CRITERIONS",
                                                          "metric": "METRICS"}[part]), value)


def _check_choice_names(p: ParamSpec, value: Any, trial: Options, params: Sequence[ParamSpec]) -> None:
    """A categorical choice of a built-in name key (``optimizer.name: adma``), or of the view: refused as the run
    would refuse it, unless an ``import`` key of the file or of the sweep makes the section a plugin's."""
    top = p.key.split(".")[0]
    if top in ("view", "views"):
        from bootstrap_repro.views import check_view_option

        check_view_option(trial)
        return
    imports = _NAME_KEYS.get(p.key)
    if imports is None or any(trial.get(k) for k in imports) or any(q.key in imports for q in params):
        return
    try:
        _check_name(p.key, value, trial)
    except ImportError:  # no torch where the driver runs (trials in Docker): each trial checks its name
        return


def _check_params(params: Sequence[ParamSpec], base: Options) -> None:
    leaves = flatten(base.as_dict())
    where_file = base.source or "the base options"
    for p in params:
        where = f"params.{p.key}"
        if p.key.split(".")[0] == "exp":
            raise SweepError(f"{where}: exp.* is set by the sweep (each trial runs in <sweep.dir>/trials/<number>); "
                             f"remove it")
        if p.key not in leaves:
            section = next((k for k in leaves if k.startswith(p.key + ".")), None)
            if section is not None:
                raise SweepError(f"{where}: is a section of {where_file}, not a value; search one of its keys, "
                                 f"e.g. {section}")
            try:  # the run's own rule: an override of a key the file does not set is refused (so far)
                base.copy().apply_overrides(override_args(p.key, p.samples()[0]))
            except OptionsError:
                raise SweepError(_unknown_param(p.key, base, where_file)) from None
        default = leaves.get(p.key)
        if isinstance(default, list):
            raise SweepError(f"{where}: the option is a list ({default!r}); only single values can be searched")
        if p.type == "float" and _is_int(default):
            raise SweepError(f"{where}: the option is an int ({default!r} in {where_file}); use type: int")
        for value in p.samples():
            try:  # the value's type, then the option's declared range (a trial would refuse it: exit 2)
                trial = base.copy()
                trial.apply_overrides(override_args(p.key, value))
                trial.check()
                if p.type == "categorical":  # a name the run resolves (optimizer.name: adma)
                    _check_choice_names(p, value, trial, params)
            except ReproError as exc:
                msg = str(exc).removeprefix(f"--{p.key}: ").removeprefix(f"{p.key}: ")
                raise SweepError(f"{where}: {value!r} is not a valid value: {msg}") from None


def _check_enqueue(raw: Any, params: Sequence[ParamSpec]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise SweepError(f"enqueue: expected a list of {{param: value}} mappings, got {raw!r}")
    by_key = {p.key: p for p in params}
    for i, point in enumerate(raw):
        for key, value in point.items():
            if key not in by_key:
                raise SweepError(f"enqueue[{i}].{key}: not a param of this sweep{did_you_mean(str(key), by_key)} "
                                 f"(params: {', '.join(by_key)})")
            if not by_key[key].contains(value):
                raise SweepError(f"enqueue[{i}].{key}: {value!r} is outside the param's range {by_key[key].as_dict()}")
    return tuple(dict(r) for r in raw)


def parse_sweep(
    data: Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    source: Path | None = None,
    n_trials: int | None = None,
    jobs: int | None = None,
    storage: str | None = None,
) -> SweepSpec:
    """Check a loaded sweep file; ``n_trials``, ``jobs`` and ``storage`` (flags) win over the file."""
    for k in data:
        if k not in TOP_KEYS:
            raise SweepError(f"{k}: unknown top-level key{did_you_mean(str(k), TOP_KEYS)} (valid: {', '.join(TOP_KEYS)})")
    sw = data.get("sweep")
    if not isinstance(sw, Mapping):
        raise SweepError("sweep: missing; the file needs a `sweep:` mapping (options, dir, objective, direction, n_trials)")
    for k in sw:
        if k not in SWEEP_KEYS:
            raise SweepError(f"sweep.{k}: unknown key{did_you_mean(str(k), SWEEP_KEYS)} (valid: {', '.join(SWEEP_KEYS)})")
    for k in ("options", "dir", "objective", "direction", "n_trials"):
        if sw.get(k) is None and not (k == "n_trials" and n_trials is not None):
            raise SweepError(f"sweep.{k}: missing; add it to the sweep file")
    for k in ("options", "dir"):
        if not isinstance(sw[k], str) or not sw[k].strip():
            raise SweepError(f"sweep.{k}: expected a path, got {sw[k]!r}")
    sweep_dir = check_sweep_dir(sw["dir"])
    objective = sw["objective"]
    if not isinstance(objective, str) or not OBJECTIVE_RE.match(objective):
        raise SweepError(f"sweep.objective: expected '<train|eval>_epoch.<name>' such as eval_epoch.acctop1 "
                         f"(a value logged at the end of each epoch), got {objective!r}")
    direction = sw["direction"]
    if direction not in DIRECTIONS:
        raise SweepError(f"sweep.direction: expected maximize or minimize, got {direction!r}")
    n = (_positive_int(n_trials, "--n-trials", MAX_TRIALS) if n_trials is not None
         else _positive_int(sw["n_trials"], "sweep.n_trials", MAX_TRIALS))
    j = _positive_int(jobs, "--jobs") if jobs is not None else _positive_int(sw.get("jobs", 1), "sweep.jobs")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if j > JOBS_PER_CPU * cpus:  # each job is a process training a model: beyond that the machine thrashes
        raise SweepError(f"{'--jobs' if jobs is not None else 'sweep.jobs'}: {j} parallel trials asked, this machine "
                         f"has {cpus} CPU(s); use at most {JOBS_PER_CPU * cpus}")
    max_retries = _non_negative_int(sw.get("max_retries", DEFAULT_MAX_RETRIES), "sweep.max_retries", MAX_RETRIES)
    store = (_check_storage(storage, "--storage") if storage is not None
             else _check_storage(sw.get("storage"), "sweep.storage"))
    name = sw.get("name") or sweep_dir.resolve().name
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"sweep.name: expected a non-empty string, got {name!r}")
    if _has_control(name):  # it starts every line the sweep prints
        raise SweepError(f"sweep.name: a name cannot hold a control character (newline, tab...), got {name!r}")
    raw_params = data.get("params")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise SweepError("params: missing or empty; add at least one, "
                         "e.g. optimizer.lr: {type: float, low: 0.0001, high: 0.1, log: true}")
    params = tuple(ParamSpec.parse(str(k), v) for k, v in raw_params.items())
    sampler = parse_algo(sw.get("sampler"), "sampler", "tpe")
    pruner = parse_algo(sw.get("pruner"), "pruner", "none")
    make_sampler(sampler, params)  # the grid's size; the Optuna classes check their own arguments
    make_pruner(pruner)
    for i, tok in enumerate(overrides):
        flag = tok.split("=", 1)[0]
        if flag.startswith("--exp."):
            raise SweepError(f"{flag}: set by the sweep (each trial runs in <sweep.dir>/trials/<number>); remove it")
    try:
        base = Options.load(sw["options"], list(overrides))
    except OptionsError as exc:
        raise type(exc)(f"sweep.options: {exc}") from None
    _check_params(params, base)
    check_algorithms(sampler, pruner, params, direction)  # a few in-memory trials: what Optuna refuses only later
    mode = objective.split("_epoch.", 1)[0]
    split = base.get(f"dataset.{mode}_split")
    if not split:
        raise SweepError(f"sweep.objective: {objective} needs dataset.{mode}_split, which is empty in {sw['options']}")
    return SweepSpec(
        options_path=Path(sw["options"]), dir=sweep_dir, name=name.strip(), objective=objective, direction=direction,
        n_trials=n, jobs=j, sampler=sampler, pruner=pruner, storage=store, params=params,
        enqueue=_check_enqueue(data.get("enqueue"), params), max_retries=max_retries, overrides=tuple(overrides),
        source=source, base=base,
    )


def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, n_trials: int | None = None,
               jobs: int | None = None, storage: str | None = None) -> SweepSpec:
    """Read and check the sweep file ``path``; bad input raises a one-line :class:`SweepError`."""
    path = Path(path)
    return parse_sweep(_read(path), overrides, source=path, n_trials=n_trials, jobs=jobs, storage=storage)
