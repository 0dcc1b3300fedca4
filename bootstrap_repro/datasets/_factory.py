"""``datasets.factory(engine)``: the train and eval datasets from ``dataset.*`` options."""

from __future__ import annotations

import os

from collections.abc import Mapping
from typing import Any

from bootstrap_repro import plugins
from bootstrap_repro.datasets._dataset import Dataset, check_split
from bootstrap_repro.datasets._digits import Digits
from bootstrap_repro.datasets._synthetic import Synthetic
from bootstrap_repro.errors import OptionsError, PluginError, did_you_mean
from bootstrap_repro.options import Options

__all__ = ["factory", "DATASETS"]

#: Keys of ``dataset`` read by the factory itself (not passed to a built-in).
COMMON_KEYS = ("name", "import", "dir", "train_split", "eval_split", "nb_threads", "batch_size")

#: Built-in datasets by ``dataset.name``.
DATASETS: dict[str, type[Dataset]] = {"digits": Digits, "synthetic": Synthetic}

#: Engine key -> the option naming its split.
SPLIT_KEYS = {"train": "train_split", "eval": "eval_split"}


def _options(engine: Any) -> Options:
    return engine.options if engine is not None else Options.current()


def _specific_kwargs(name: str, dopt: Mapping[str, Any], arg_names: Mapping[str, str]) -> dict[str, Any]:
    kwargs = {}
    for key, value in dopt.items():
        if key in COMMON_KEYS:
            continue
        if key not in arg_names:
            valid = [*COMMON_KEYS, *arg_names]
            raise OptionsError(
                f"dataset.{key}: unknown option for dataset '{name}'{did_you_mean(key, valid, 'dataset.')} "
                f"(valid: {', '.join(valid)})"
            )
        kwargs[arg_names[key]] = value
    return kwargs


def _builtin(name: Any, dopt: Mapping[str, Any], engine: Any, seed: int) -> dict[str, Dataset]:
    plugins.resolve(DATASETS, name, "dataset.name")  # raises, listing the valid names
    cls = DATASETS[name]
    kwargs = _specific_kwargs(name, dopt, cls.option_args)
    device = getattr(engine, "device", None)
    common = dict(
        batch_size=dopt.get("batch_size", 64),
        nb_threads=dopt.get("nb_threads", 0),
        pin_memory=getattr(device, "type", None) == "cuda",
        seed=seed,
        dir_data=dopt.get("dir"),
    )
    out: dict[str, Dataset] = {}
    for mode, split_key in SPLIT_KEYS.items():
        split = dopt.get(split_key)
        if not split:
            continue
        check_split(split, cls.splits, f"dataset.{split_key}", name)
        out[mode] = plugins.build(cls, "dataset", f"dataset '{name}'", split, shuffle=(mode == "train"),
                                  **common, **kwargs)
    return out


def _check_not_empty(datasets: Mapping[str, Any], where: str) -> None:
    """A split without items fails before the run starts (DataLoader would refuse it at the first epoch)."""
    for mode, ds in datasets.items():
        try:
            size = len(ds)
        except TypeError:  # an iterable dataset: its length is not known
            continue
        if size == 0:
            split = SPLIT_KEYS.get(mode, mode)
            raise OptionsError(f"dataset: the {mode} split ({where}) has no items; check dataset.{split} and the data")


#: DataLoader workers per CPU of this machine at most (loaders waiting on I/O may use more than one each).
WORKERS_PER_CPU = 8


def check_nb_threads(value: Any) -> int:
    """``dataset.nb_threads`` as a whole number of DataLoader workers that this machine can fork."""
    cpus = os.cpu_count() or 1
    bound = WORKERS_PER_CPU * cpus
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionsError(f"dataset.nb_threads: expected a whole number of DataLoader workers >= 0, got {value!r}")
    if value > bound:
        raise OptionsError(f"dataset.nb_threads: {value} DataLoader workers asked, this machine has {cpus} CPU(s); "
                           f"use at most {bound} ({WORKERS_PER_CPU} per CPU)")
    return value


def factory(engine: Any = None) -> dict[str, Any]:
    """Build ``{'train': ds, 'eval': ds}`` from ``dataset.import`` or built-in ``dataset.name``.

    A split option that is empty (``dataset.eval_split: null``) leaves its key out.
    ``engine`` gives the options, ``seed`` (shuffling) and ``device`` (pin memory);
    ``None`` uses the current :class:`Options`.
    """
    options = _options(engine)
    dopt = options.get("dataset") or {}
    if not isinstance(dopt, Mapping):
        raise OptionsError(f"dataset: expected a mapping of options, got {dopt!r}")
    check_nb_threads(dopt.get("nb_threads", 0))
    if dopt.get("import"):
        module = dopt["import"]
        result = plugins.import_factory(module, "dataset.import")(engine)
        if not isinstance(result, Mapping):
            raise PluginError(
                f"dataset.import: {module}.factory(engine) returned {type(result).__name__}; "
                f"expected a dict like {{'train': dataset, 'eval': dataset}}"
            )
        _check_not_empty(result, f"from {module}")
        return dict(result)
    name = dopt.get("name")
    if name is None:
        raise OptionsError(
            f"dataset.name: missing; set it to one of {', '.join(sorted(DATASETS))} "
            f"or set dataset.import to a module with a factory"
        )
    seed = getattr(engine, "seed", None)
    if seed is None:
        seed = options.get("misc.seed", 0) or 0
    out = _builtin(name, dopt, engine, int(seed))
    _check_not_empty(out, f"dataset '{name}'")
    return out
