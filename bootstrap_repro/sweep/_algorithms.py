"""Samplers and pruners by name: ``{name: tpe, seed: 0}`` → ``optuna.samplers.TPESampler(seed=...)``.

The other keys of a spec are the keyword arguments of the Optuna class, checked before anything
is created: against its signature (a misspelled one is an error, not a silent default), against
the declared type and range of each known argument (:data:`SAMPLER_ARGS`, :data:`PRUNER_ARGS`:
``n_startup_trials: "abc"``, ``n_ei_candidates: -5``, ``n_warmup_steps: 1e20`` and arguments that
take a Python function are refused), and by :func:`check_algorithms`, which builds the sampler
and the pruner and runs a few trials of an in-memory study over the sweep's search space: what
Optuna would only refuse at the first (or the first model-based) trial is refused up front.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bootstrap_repro.errors import PluginError, did_you_mean
from bootstrap_repro.sweep._errors import SweepError

if TYPE_CHECKING:
    import optuna

    from bootstrap_repro.sweep._spec import ParamSpec

__all__ = ["AlgoSpec", "SAMPLERS", "PRUNERS", "SAMPLER_ARGS", "PRUNER_ARGS", "MAX_SEED", "parse_algo", "make_sampler",
           "make_pruner", "check_algorithms"]

#: Sampler names and their class in ``optuna.samplers``.
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler"}
#: Pruner names and their class in ``optuna.pruners``.
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
#: Sampler arguments the sweep fills in itself.
_RESERVED = {"search_space": "it is built from `params`"}
#: Bound of a count argument (trials, steps, candidates): a C int; no real sweep comes near it.
MAX_INT = 2**31 - 1
#: A sampler seed is a numpy seed: ``0 <= seed <= 2**32 - 1``.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Arg:
    """The declared type and range of a sampler or pruner argument (as it can be written in YAML)."""

    kind: str  #: int, number, bool, choice, auto_or_int, mapping, or code (a Python object: not from a file)
    low: float | None = None
    high: float | None = None
    above: bool = False  #: ``> low`` rather than ``>= low``
    null: bool = False  #: null (Optuna's default) is allowed
    choices: tuple[Any, ...] = ()

    def check(self, value: Any, where: str) -> None:
        """Raise a one-line :class:`SweepError` when ``value`` is not of this argument's type and range."""
        if value is None and self.null:
            return
        null = " or null" if self.null else ""
        if self.kind == "code":
            raise SweepError(f"{where}: takes a Python function or object, which a sweep file cannot hold; remove it "
                             f"(Optuna's default is used)")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SweepError(f"{where}: expected {'true, false or null' if self.null else 'true or false'}, "
                                 f"got {value!r}")
            return
        if self.kind == "choice":
            if value not in self.choices or isinstance(value, bool):
                shown = ", ".join("null" if c is None else str(c) for c in self.choices)
                raise SweepError(f"{where}: expected one of {shown}, got {value!r}")
            return
        if self.kind == "mapping":
            if not isinstance(value, Mapping):
                raise SweepError(f"{where}: expected a mapping {{param: value}}{null}, got {value!r}")
            return
        if self.kind == "auto_or_int" and value == "auto":
            return
        if self.kind in ("int", "auto_or_int"):
            if not isinstance(value, int) or isinstance(value, bool):
                what = "auto or an int" if self.kind == "auto_or_int" else "an int"
                raise SweepError(f"{where}: expected {what}{null}, got {value!r}")
        else:  # number
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SweepError(f"{where}: expected a number{null}, got {value!r}")
            try:
                finite = math.isfinite(float(value))
            except OverflowError:
                finite = False
            if not finite:
                raise SweepError(f"{where}: expected a finite number, got {value!r}")
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            raise SweepError(f"{where}: must be {'>' if self.above else '>='} {_num(self.low)}, got {value!r}")
        if self.high is not None and value > self.high:
            raise SweepError(f"{where}: must be <= {_num(self.high)}, got {value!r}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


_COUNT0 = Arg("int", 0, MAX_INT)  # a count that may be 0
_COUNT1 = Arg("int", 1, MAX_INT)  # a count of at least 1
_FLAG = Arg("bool")
_FLAG_OR_NULL = Arg("bool", null=True)
_CODE = Arg("code", null=True)
_SEED = Arg("int", 0, MAX_SEED, null=True)

#: The arguments of each sampler that a sweep file can set, with their type and range.  An argument
#: of the Optuna class that is missing here (a newer Optuna's) is checked by :func:`check_algorithms` only.
SAMPLER_ARGS: dict[str, dict[str, Arg]] = {
    "tpe": {
        "consider_prior": _FLAG_OR_NULL, "prior_weight": Arg("number", 0, None, above=True, null=True),
        "consider_magic_clip": _FLAG_OR_NULL, "consider_endpoints": _FLAG_OR_NULL,
        "n_startup_trials": _COUNT0, "n_ei_candidates": _COUNT1, "gamma": _CODE, "weights": _CODE, "seed": _SEED,
        "multivariate": _FLAG_OR_NULL, "group": _FLAG, "warn_independent_sampling": _FLAG_OR_NULL,
        "constant_liar": _FLAG, "constraints_func": _CODE,
    },
    "random": {"seed": _SEED},
    "grid": {"seed": _SEED},
    "cmaes": {
        "x0": Arg("mapping", null=True), "sigma0": Arg("number", 0, None, above=True, null=True),
        "n_startup_trials": _COUNT0, "independent_sampler": _CODE, "warn_independent_sampling": _FLAG,
        "seed": _SEED, "consider_pruned_trials": _FLAG, "restart_strategy": Arg("choice", choices=(None, "ipop", "bipop")),
        "popsize": Arg("int", 1, MAX_INT, null=True), "inc_popsize": Arg("int", -1, MAX_INT),
        "use_separable_cma": _FLAG, "with_margin": _FLAG, "lr_adapt": _FLAG, "source_trials": _CODE,
    },
}
#: The arguments of each pruner, with their type and range (steps are epochs).
PRUNER_ARGS: dict[str, dict[str, Arg]] = {
    "median": {"n_startup_trials": _COUNT0, "n_warmup_steps": _COUNT0, "interval_steps": _COUNT1,
               "n_min_trials": _COUNT1},
    "hyperband": {"min_resource": _COUNT1, "max_resource": Arg("auto_or_int", 1, MAX_INT),
                  "reduction_factor": Arg("int", 2, MAX_INT), "bootstrap_count": _COUNT0},
    "none": {},
}


@dataclass(frozen=True)
class AlgoSpec:
    """A sampler or pruner: its name and the keyword arguments of its Optuna class."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


def _class(kind: str, name: str) -> type:
    import optuna

    module = optuna.samplers if kind == "sampler" else optuna.pruners
    registry = SAMPLERS if kind == "sampler" else PRUNERS
    return getattr(module, registry[name])


def parse_algo(raw: Any, kind: str, default: str) -> AlgoSpec:
    """Check ``sweep.<kind>`` (a name or ``{name: ..., <kwargs>}``) against the Optuna class."""
    key = f"sweep.{kind}"
    registry = SAMPLERS if kind == "sampler" else PRUNERS
    if raw is None:
        raw = {"name": default}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise SweepError(f"{key}: expected a name or a mapping like {{name: {default}}}, got {raw!r}")
    kwargs = dict(raw)
    name = kwargs.pop("name", default)
    if not isinstance(name, str) or name not in registry:
        raise SweepError(
            f"{key}: unknown {kind} {name!r}{did_you_mean(str(name), registry)} (valid: {', '.join(registry)})"
        )
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise PluginError(f"{key}: cmaes needs the cmaes package; pip install cmaes")
    cls = _class(kind, name)
    valid = [p.name for p in inspect.signature(cls.__init__).parameters.values()
             if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    declared = (SAMPLER_ARGS if kind == "sampler" else PRUNER_ARGS).get(str(name), {})
    for arg in kwargs:
        where = f"{key}.{arg}"
        if arg in _RESERVED and kind == "sampler":
            raise SweepError(f"{where}: set by the sweep ({_RESERVED[arg]}); remove it")
        if arg not in valid:
            near = did_you_mean(str(arg), ["name", *valid])
            if near == "; did you mean name?":
                raise SweepError(f"{where}: unknown key{near}")
            if "name" not in raw:
                raise SweepError(f"{where}: unknown argument of {name}, the default {kind}; set sweep.{kind}.name "
                                 f"(valid: {', '.join(registry)})")
            shown = ", ".join(v for v in valid if v not in _RESERVED) or "none"
            raise SweepError(
                f"{where}: unknown argument of {name}{near} "
                f"(valid: {shown}; see optuna.{kind}s.{cls.__name__})"
            )
        if arg in declared:
            declared[arg].check(kwargs[arg], where)
    low, high = kwargs.get("min_resource", 1), kwargs.get("max_resource", "auto")
    if name == "hyperband" and high != "auto" and high < low:  # Optuna would make no bracket: never prune
        raise SweepError(f"{key}.max_resource: `min_resource <= max_resource` must hold, but got "
                         f"(min_resource={low}, max_resource={high})")
    return AlgoSpec(str(name), kwargs)


#: Points of a grid search at most (the sampler holds every one in memory).
MAX_GRID_POINTS = 1_000_000


def _grid_size(p: ParamSpec) -> float | None:
    """How many values the grid of ``p`` has, computed without listing them (None: a float range without step)."""
    if p.type == "categorical":
        return len(p.choices)
    if p.type == "int":
        return len(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    if p.step is None:
        return None
    n = (p.high - p.low) / p.step + 1
    return n if math.isfinite(n) else math.inf


def _grid_space(params: Sequence[ParamSpec]) -> dict[str, list[Any]]:
    space = {}
    total = 1.0
    for p in params:
        size = _grid_size(p)
        if size is not None:
            total *= size
            if total > MAX_GRID_POINTS:
                raise SweepError(
                    f"params.{p.key}: the grid would hold {total:.3g} points with this param's {size:.3g} values "
                    f"(at most {MAX_GRID_POINTS}); narrow its range, raise its step, or use another sampler"
                )
        values = p.grid_values()
        if values is None:
            raise SweepError(
                f"params.{p.key}: the grid sampler needs a finite set of values, but this is a float range "
                f"without a step; add `step` or use type: categorical with choices"
            )
        space[p.key] = values
    return space


def _construct(cls: type, kwargs: Mapping[str, Any], where: str) -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise SweepError(f"{where}: {str(exc).splitlines()[0]}") from None


def _sampler_kwargs(spec: AlgoSpec, params: Sequence[ParamSpec], trial_index: int) -> dict[str, Any]:
    kwargs = dict(spec.kwargs)
    if kwargs.get("seed") is not None:
        kwargs["seed"] = (int(kwargs["seed"]) + trial_index) % (MAX_SEED + 1)
    if spec.name == "grid":
        kwargs["search_space"] = _grid_space(params)
    return kwargs


def make_sampler(spec: AlgoSpec, params: Sequence[ParamSpec], trial_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler for the ``trial_index``-th trial of the study.

    A ``seed`` becomes ``(seed + trial_index) % 2**32``: a one-worker sweep is reproducible, and
    parallel workers (or processes on other machines) never replay the same random draws.  The
    modulo keeps the seed a valid numpy seed for any trial number (a seed near ``2**32 - 1``, a long
    resumed study); for ``seed + trial_index < 2**32`` it changes nothing.
    """
    return _construct(_class("sampler", spec.name), _sampler_kwargs(spec, params, trial_index),
                      f"sweep.sampler ({spec.name})")


def make_pruner(spec: AlgoSpec) -> optuna.pruners.BasePruner:
    """The pruner of ``spec``."""
    return _construct(_class("pruner", spec.name), spec.kwargs, f"sweep.pruner ({spec.name})")


# --------------------------------------------------------------------------- the probe study
#: Trials (and reported epochs per trial) of the in-memory study run by :func:`check_algorithms`.
_PROBE_TRIALS, _PROBE_STEPS = 3, 3
#: Arguments set to these values in the second probe, so that the model-based sampling (and the
#: pruning decision) of the algorithm runs on the probe's few trials instead of only after the startup ones.
_EAGER = {"sampler": {"n_startup_trials": 0}, "pruner": {"n_startup_trials": 0, "n_warmup_steps": 0, "n_min_trials": 1}}


def _probe(sampler: AlgoSpec, pruner: AlgoSpec, params: Sequence[ParamSpec], direction: str) -> None:
    """A few trials of an in-memory study with these algorithms over ``params``: raises what Optuna raises."""
    import optuna

    study = optuna.create_study(direction=direction, sampler=_class("sampler", sampler.name)(
        **_sampler_kwargs(sampler, params, 0)), pruner=_class("pruner", pruner.name)(**pruner.kwargs))
    for i in range(_PROBE_TRIALS):
        trial = study.ask()
        for p in params:
            p.suggest(trial)
        if sampler.name == "grid":  # at its last point the grid sampler stops the study, which only optimize() allows
            return
        for step in range(_PROBE_STEPS):
            trial.report(float(i + step), step)
            trial.should_prune()
        study.tell(trial, float(i))


def _eager(spec: AlgoSpec, kind: str, eager: bool = True) -> AlgoSpec:
    """``spec`` with its startup counts at 0 (those of its class's arguments), or as it is when not ``eager``."""
    if not eager:
        return spec
    args = inspect.signature(_class(kind, spec.name).__init__).parameters
    return AlgoSpec(spec.name, {**spec.kwargs, **{k: v for k, v in _EAGER[kind].items() if k in args}})


def _failure(sampler: AlgoSpec, pruner: AlgoSpec, params: Sequence[ParamSpec], direction: str) -> str | None:
    """Why the probe study fails with these algorithms (the first line of the exception), or None."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _probe(sampler, pruner, params, direction)
    except Exception as exc:  # noqa: BLE001 - any refusal of Optuna's is bad input, reported as one line
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        optuna.logging.set_verbosity(verbosity)
    return None


def check_algorithms(sampler: AlgoSpec, pruner: AlgoSpec, params: Sequence[ParamSpec],
                     direction: str = "minimize") -> None:
    """Build the sampler and the pruner and run a few trials of an in-memory study over ``params``.

    Twice: with the arguments as given, then with the startup counts set to 0 so that the
    model-based sampling and the pruning decision run too (what Optuna would otherwise only refuse
    after ``n_startup_trials`` trials).  A failure is one :class:`SweepError` line naming the argument
    without which the probe passes (``sweep.sampler.<arg>: ...``), else the sampler or the pruner.
    """
    for eager in (False, True):
        s, p = _eager(sampler, "sampler", eager), _eager(pruner, "pruner", eager)
        if eager and (s, p) == (sampler, pruner):
            return  # no startup count: the first probe ran it all
        reason = _failure(s, p, params, direction)
        if reason is None:
            continue
        for kind, given in (("sampler", sampler), ("pruner", pruner)):
            for arg in given.kwargs:
                without = _eager(AlgoSpec(given.name, {k: v for k, v in given.kwargs.items() if k != arg}), kind, eager)
                if _failure(*((without, p) if kind == "sampler" else (s, without)), params, direction) is None:
                    raise SweepError(f"sweep.{kind}.{arg}: Optuna refused {given.kwargs[arg]!r} ({reason}); "
                                     f"fix or remove it")
        kind, spec = ("pruner", pruner) if _failure(s, AlgoSpec("none"), params, direction) is None \
            else ("sampler", sampler)
        raise SweepError(f"sweep.{kind}: Optuna's {_class(kind, spec.name).__name__} fails on a trial with "
                         f"{spec.as_dict()} ({reason}); fix its arguments")
