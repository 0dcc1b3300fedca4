"""Samplers and pruners by name: ``{name: tpe, seed: 0}`` → ``optuna.samplers.TPESampler(seed=...)``.

The other keys of a spec are the keyword arguments of the Optuna class, checked
against its signature so that a misspelled one is an error, not a silent default.
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

__all__ = ["AlgoSpec", "SAMPLERS", "PRUNERS", "parse_algo", "make_sampler", "make_pruner"]

#: Sampler names and their class in ``optuna.samplers``.
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler"}
#: Pruner names and their class in ``optuna.pruners``.
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
#: Sampler arguments the sweep fills in itself.
_RESERVED = {"search_space": "it is built from `params`"}


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
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for arg in kwargs:
        if arg in _RESERVED and kind == "sampler":
            raise SweepError(f"{key}.{arg}: set by the sweep ({_RESERVED[arg]}); remove it")
        if arg not in valid:
            shown = ", ".join(v for v in valid if v not in _RESERVED) or "none"
            raise SweepError(
                f"{key}.{arg}: unknown argument of {name}{did_you_mean(str(arg), valid)} "
                f"(valid: {shown}; see optuna.{kind}s.{cls.__name__})"
            )
    if kind == "sampler" and "seed" in kwargs and (not isinstance(kwargs["seed"], int) or isinstance(kwargs["seed"], bool)):
        raise SweepError(f"{key}.seed: expected an int, got {kwargs['seed']!r}")
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


def make_sampler(spec: AlgoSpec, params: Sequence[ParamSpec], trial_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler for the ``trial_index``-th trial of the study.

    A ``seed`` becomes ``seed + trial_index``: a one-worker sweep is reproducible, and
    parallel workers (or processes on other machines) never replay the same random draws.
    """
    kwargs = dict(spec.kwargs)
    if kwargs.get("seed") is not None:
        kwargs["seed"] = int(kwargs["seed"]) + trial_index
    if spec.name == "grid":
        kwargs["search_space"] = _grid_space(params)
    return _construct(_class("sampler", spec.name), kwargs, f"sweep.sampler ({spec.name})")


def make_pruner(spec: AlgoSpec) -> optuna.pruners.BasePruner:
    """The pruner of ``spec``."""
    return _construct(_class("pruner", spec.name), spec.kwargs, f"sweep.pruner ({spec.name})")
