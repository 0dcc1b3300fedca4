"""``models.factory(engine)``: the model from ``model.*`` options.

``model.network``, ``model.criterion`` and ``model.metric`` each take either
``name`` (a built-in; its other keys are its constructor arguments) or
``import`` (a module whose ``factory(engine)`` builds it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bootstrap_repro import plugins
from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.models._criterions import BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss
from bootstrap_repro.models._metrics import Accuracy
from bootstrap_repro.models._model import Model, SimpleModel
from bootstrap_repro.models._networks import MLP, LeNet
from bootstrap_repro.options import Options

__all__ = [
    "factory",
    "network_factory",
    "criterion_factory",
    "metric_factory",
    "MODELS",
    "NETWORKS",
    "CRITERIONS",
    "METRICS",
]

#: ``model.name`` -> model class (``model.import`` replaces the whole model).
MODELS: dict[str, type[Model]] = {"default": Model, "simple": SimpleModel}
#: ``model.network.name`` -> network class.
NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "lenet": LeNet}
#: ``model.criterion.name`` -> criterion class.
CRITERIONS: dict[str, Callable[..., nn.Module]] = {
    "nll": NLLLoss,
    "cross_entropy": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
}
#: ``model.metric.name`` -> metric class.
METRICS: dict[str, Callable[..., nn.Module]] = {"accuracy": Accuracy}


def _options(engine: Any) -> Options:
    return engine.options if engine is not None else Options.current()


def _log(engine: Any, message: str) -> None:
    logger = getattr(engine, "logger", None)
    if callable(logger):
        logger(message)


def _dataset_hints(engine: Any) -> dict[str, int]:
    """``input_dim``, ``in_channels`` and ``nb_classes`` read from ``engine.dataset`` when it has one."""
    datasets = getattr(engine, "dataset", None)
    if not isinstance(datasets, Mapping):
        return {}
    ds = datasets.get("train") or datasets.get("eval")
    if ds is None:
        return {}
    hints: dict[str, int] = {}
    if isinstance(getattr(ds, "nb_classes", None), int):
        hints["nb_classes"] = ds.nb_classes
    try:
        data = ds[0]["data"]
    except Exception:  # noqa: BLE001 - a dataset without a readable 'data' gives no hints
        return hints
    if isinstance(data, torch.Tensor):
        hints["input_dim"] = data.numel()
        if data.dim() == 3:
            hints["in_channels"] = data.shape[0]
    return hints


def _subtree(options: Options, key: str) -> Mapping[str, Any] | None:
    sub = options.get(key)
    if sub is None or isinstance(sub, Mapping):
        return sub
    if isinstance(sub, str):  # shorthand: `criterion: nll`
        return {"name": sub}
    raise OptionsError(f"{key}: expected a mapping with 'name' or 'import', got {sub!r}")


def _build(key: str, registry: Mapping[str, Callable[..., Any]], engine: Any, required: bool,
           hints: Mapping[str, Any] | None = None) -> Any:
    sub = _subtree(_options(engine), key)
    if sub is None:
        if required:
            raise OptionsError(
                f"{key}: missing; set {key}.name (valid: {', '.join(sorted(registry))}) or {key}.import"
            )
        return None
    if sub.get("import"):
        return plugins.import_factory(sub["import"], f"{key}.import")(engine)
    name = sub.get("name")
    if name is None:
        raise OptionsError(
            f"{key}.name: missing; set it to one of {', '.join(sorted(registry))} or set {key}.import"
        )
    cls = plugins.resolve(registry, name, f"{key}.name")
    kwargs = plugins.options_kwargs(cls, sub, key, skip=("name", "import"))
    params = inspect.signature(cls).parameters
    for arg, value in (hints or {}).items():
        if arg in params and arg not in kwargs:
            kwargs[arg] = value
            _log(engine, f"{key}.{arg}: {value} (from the dataset)")
    return plugins.build(cls, key, f"{key.rsplit('.', 1)[-1]} '{name}'", **kwargs)


def network_factory(engine: Any = None) -> nn.Module:
    """The network of ``model.network``; ``input_dim``/``nb_classes``/``in_channels`` default to the dataset's."""
    return _build("model.network", NETWORKS, engine, required=True, hints=_dataset_hints(engine))


def criterion_factory(engine: Any = None) -> Any:
    """The criterion of ``model.criterion``, or ``None`` when the section is absent."""
    return _build("model.criterion", CRITERIONS, engine, required=False)


def metric_factory(engine: Any = None) -> Any:
    """The metric of ``model.metric``, or ``None`` when the section is absent."""
    return _build("model.metric", METRICS, engine, required=False)


def factory(engine: Any = None) -> nn.Module:
    """Build the model from ``model.import`` or ``model.name`` (``default``/``simple``), on ``engine.device``.

    The criterion and the metric serve both modes (``train`` and ``eval``).
    """
    options = _options(engine)
    mopt = options.get("model")
    if mopt is None:
        raise OptionsError(
            f"model: missing; set model.network.name (valid: {', '.join(sorted(NETWORKS))}) and "
            f"model.criterion.name (valid: {', '.join(sorted(CRITERIONS))}), or model.import"
        )
    if not isinstance(mopt, Mapping):
        raise OptionsError(
            f"model: expected a mapping with network/criterion/metric (or import), got {mopt!r}"
        )
    if mopt.get("import"):
        module = mopt["import"]
        model = plugins.import_factory(module, "model.import")(engine)
        if not isinstance(model, nn.Module):
            raise PluginError(
                f"model.import: {module}.factory(engine) returned {type(model).__name__}; expected a torch.nn.Module"
            )
    else:
        cls = plugins.resolve(MODELS, mopt.get("name", "default"), "model.name")
        network = network_factory(engine)
        criterion = criterion_factory(engine)
        metric = metric_factory(engine)
        both = ("train", "eval")
        model = cls(
            network,
            criterions={mode: criterion for mode in both} if criterion is not None else {},
            metrics={mode: metric for mode in both} if metric is not None else {},
        )
    device = getattr(engine, "device", None)
    if device is not None:
        model.to(device)
    return model
