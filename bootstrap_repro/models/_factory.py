"""``models.factory(engine)``: the model from ``model.*`` options.

``model.network``, ``model.criterion`` and ``model.metric`` each take either
``name`` (a built-in; its other keys are its constructor arguments) or
``import`` (a module whose ``factory(engine)`` builds it).  A criterion or metric
module whose factory takes a mode (the seed's ``factory(engine, mode)``) is called
once per mode (the keys of ``engine.dataset``), each mode getting its own instance;
``factory(engine)`` is called once and its part serves every mode.
``model.criterion.name`` also takes a ``torch.nn`` loss class name (``MSELoss``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bootstrap_repro import plugins
from bootstrap_repro.errors import OptionsError, PluginError, did_you_mean
from bootstrap_repro.models._criterions import BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss, TorchLoss, torch_losses
from bootstrap_repro.models._metrics import Accuracy
from bootstrap_repro.models._model import Model, SimpleModel, model_modes
from bootstrap_repro.models._networks import MLP, LeNet
from bootstrap_repro.options import Options

__all__ = [
    "factory",
    "network_factory",
    "criterion_factory",
    "metric_factory",
    "criterions_per_mode",
    "metrics_per_mode",
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
#: ``torch.nn`` loss names that mean a built-in (the seed's own ``BCEWithLogitsLoss`` squeezed ``[B, 1]``).
TORCH_NAMES: dict[str, Callable[..., nn.Module]] = {"BCEWithLogitsLoss": BCEWithLogitsLoss}


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


def takes_mode(factory: Callable[..., Any]) -> bool:
    """Whether a plugin's factory takes a mode: ``factory(engine, mode)`` (the seed's), ``*args`` or ``mode=``."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the native call
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL or p.name == "mode" for p in params)


def _call_plugin(factory: Callable[..., Any], engine: Any, mode: str | None) -> Any:
    if mode is None or not takes_mode(factory):
        return factory(engine)
    keyword = any(p.name == "mode" and p.kind is p.KEYWORD_ONLY for p in inspect.signature(factory).parameters.values())
    return factory(engine, mode=mode) if keyword else factory(engine, mode)


def _resolve(key: str, registry: Mapping[str, Callable[..., Any]], name: Any) -> Callable[..., Any]:
    """A built-in by name; for ``model.criterion``, also a ``torch.nn`` loss class name."""
    if key != "model.criterion" or name in registry or not isinstance(name, str):
        return plugins.resolve(registry, name, f"{key}.name")
    if name in TORCH_NAMES:
        return TORCH_NAMES[name]
    losses = torch_losses()
    if name in losses:
        return losses[name]
    other = getattr(nn, name, None)
    if isinstance(other, type) and issubclass(other, nn.modules.loss._Loss):
        args = ", ".join(list(inspect.signature(other.forward).parameters)[1:])
        raise OptionsError(f"{key}.name: torch.nn.{name} takes ({args}), not (net_out, target); "
                           f"wrap it in a criterion module and set {key}.import")
    hint = did_you_mean(name, [*registry, *losses])
    raise OptionsError(f"{key}.name: unknown name {name!r}{hint} (valid: {', '.join(sorted(registry))}; "
                       f"or set {key}.import to a module with a factory)")


def _build(key: str, registry: Mapping[str, Callable[..., Any]], engine: Any, required: bool,
           hints: Mapping[str, Any] | None = None, mode: str | None = None) -> Any:
    sub = _subtree(_options(engine), key)
    if sub is None:
        if required:
            raise OptionsError(
                f"{key}: missing; set {key}.name (valid: {', '.join(sorted(registry))}) or {key}.import"
            )
        return None
    if sub.get("import"):
        return _call_plugin(plugins.import_factory(sub["import"], f"{key}.import"), engine, mode)
    name = sub.get("name")
    if name is None:
        raise OptionsError(
            f"{key}.name: missing; set it to one of {', '.join(sorted(registry))} or set {key}.import"
        )
    cls = _resolve(key, registry, name)
    if isinstance(cls, type) and issubclass(cls, nn.modules.loss._Loss):  # a torch.nn loss, wrapped
        kwargs = plugins.options_kwargs(cls, sub, key, skip=("name", "import", "target_key"),
                                        what=f"torch.nn.{name}")
        loss = plugins.build(cls, key, f"criterion '{name}'", **TorchLoss.tensor_args(kwargs))
        return TorchLoss(loss, target_key=sub.get("target_key"))
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


def criterion_factory(engine: Any = None, mode: str | None = None) -> Any:
    """The criterion of ``model.criterion`` for ``mode`` (the seed's ``factory(engine, mode)``), or ``None``."""
    return _build("model.criterion", CRITERIONS, engine, required=False, mode=mode)


def metric_factory(engine: Any = None, mode: str | None = None) -> Any:
    """The metric of ``model.metric`` for ``mode`` (the seed's ``factory(engine, mode)``), or ``None``."""
    return _build("model.metric", METRICS, engine, required=False, mode=mode)


def _per_mode(key: str, build: Callable[[Any, str | None], Any], engine: Any, modes: list[str]) -> dict[str, Any]:
    sub = _subtree(_options(engine), key)
    if sub is not None and sub.get("import"):
        factory_fn = plugins.import_factory(sub["import"], f"{key}.import")
        if not takes_mode(factory_fn):  # factory(engine): one part serves every mode
            part = build(engine, None)
            return {mode: part for mode in modes} if part is not None else {}
    parts = {mode: build(engine, mode) for mode in modes}
    return {mode: part for mode, part in parts.items() if part is not None}


def criterions_per_mode(engine: Any, modes: list[str]) -> dict[str, Any]:
    """``{mode: criterion}``: an instance per mode (a plugin ``factory(engine)``: one shared by all)."""
    return _per_mode("model.criterion", criterion_factory, engine, modes)


def metrics_per_mode(engine: Any, modes: list[str]) -> dict[str, Any]:
    """``{mode: metric}``: an instance per mode (a plugin ``factory(engine)``: one shared by all)."""
    return _per_mode("model.metric", metric_factory, engine, modes)


def factory(engine: Any = None) -> nn.Module:
    """Build the model from ``model.import`` or ``model.name`` (``default``/``simple``), on ``engine.device``.

    Criterions and metrics are built per mode: the keys of ``engine.dataset`` (``train``, ``eval``).
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
        modes = model_modes(engine)
        model = cls(network, criterions=criterions_per_mode(engine, modes), metrics=metrics_per_mode(engine, modes))
    device = getattr(engine, "device", None)
    if device is not None:
        model.to(device)
    return model
