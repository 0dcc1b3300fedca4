"""``optimizers.factory(model, engine)``: the optimizer from ``optimizer.*`` options.

``optimizer.name`` (sgd, adam, adamw) takes the torch optimizer's arguments
(``lr``, ``momentum``, ``weight_decay``, ``betas``...) plus ``grad_clip``
(max gradient norm; null or 0: off) and ``lr_scheduler: {name: step|cosine, ...}``, where
``name`` may also be any ``torch.optim.lr_scheduler`` class name (``StepLR``, ``MultiStepLR``...).
``optimizer.import`` names a module whose ``factory(model, engine)`` builds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bootstrap_repro import plugins
from bootstrap_repro.errors import OptionsError, did_you_mean
from bootstrap_repro.optimizers._optimizer import Optimizer
from bootstrap_repro.options import Options

__all__ = ["factory", "OPTIMIZERS", "LR_SCHEDULERS"]

#: ``optimizer.name`` -> torch optimizer class.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
#: ``optimizer.lr_scheduler.name`` -> torch scheduler class.
LR_SCHEDULERS: dict[str, Callable[..., Any]] = {
    "step": torch.optim.lr_scheduler.StepLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
}
#: Schedulers stepped with a value (``step(metrics)``): the per-epoch ``step()`` cannot drive them.
NEEDS_A_VALUE = ("ReduceLROnPlateau",)
#: Schedulers made of other schedulers.
COMPOSITE = ("ChainedScheduler", "SequentialLR")
_OWN_KEYS = ("name", "import", "grad_clip", "lr_scheduler")


def torch_schedulers() -> dict[str, Callable[..., Any]]:
    """The classes of ``torch.optim.lr_scheduler`` by name (``StepLR``, ``CosineAnnealingLR``...)."""
    module = torch.optim.lr_scheduler
    base = getattr(module, "LRScheduler", module._LRScheduler)
    return {name: cls for name, cls in vars(module).items()
            if isinstance(cls, type) and not name.startswith("_") and name != base.__name__
            and (issubclass(cls, base) or name in NEEDS_A_VALUE)}


def _scheduler_class(name: Any, key: str) -> Callable[..., Any]:
    """A native name (``step``) or a ``torch.optim.lr_scheduler`` class name (``StepLR``)."""
    if name in LR_SCHEDULERS:
        return LR_SCHEDULERS[name]
    classes = torch_schedulers() if isinstance(name, str) else {}
    if name in NEEDS_A_VALUE:
        raise OptionsError(f"{key}: {name} steps on a metric value, which the per-epoch scheduler step does not "
                           f"pass; use e.g. StepLR, or step it in a hook (optimizer.import)")
    if name in COMPOSITE:
        raise OptionsError(f"{key}: {name} combines other schedulers, which options cannot build; "
                           f"build the optimizer in a module and set optimizer.import")
    if name in classes:
        return classes[name]
    hint = did_you_mean(name, [*LR_SCHEDULERS, *classes]) if isinstance(name, str) else ""
    raise OptionsError(
        f"{key}: unknown name {name!r}{hint} (valid: "
        f"{', '.join(sorted(LR_SCHEDULERS))}, or a torch.optim.lr_scheduler class name such as StepLR)"
    )
_TUPLES = ("betas",)


def _kwargs(fn: Callable[..., Any], opts: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    kwargs = plugins.options_kwargs(fn, opts, key, skip=_OWN_KEYS, what=what,
                                    hidden=("params", "optimizer", "last_epoch", "verbose"))
    return {k: tuple(v) if k in _TUPLES and isinstance(v, list) else v for k, v in kwargs.items()}


def _scheduler(sopt: Any, optimizer: torch.optim.Optimizer, options: Options) -> Any:
    key = "optimizer.lr_scheduler"
    if not sopt:
        return None
    if not isinstance(sopt, Mapping):
        raise OptionsError(f"{key}: expected a mapping like {{name: step, step_size: 10}}, got {sopt!r}")
    name = sopt.get("name")
    cls = _scheduler_class(name, f"{key}.name")
    last_epoch = sopt.get("last_epoch", -1)
    if last_epoch != -1:  # the seed's argument; a resumed run restores the scheduler from its checkpoint
        raise OptionsError(f"{key}.last_epoch: only -1 (a new schedule) is supported, got {last_epoch!r}; "
                           f"resume a run with --exp.resume to continue its schedule")
    kwargs = _kwargs(cls, {k: v for k, v in sopt.items() if k != "last_epoch"}, key, f"lr_scheduler '{name}'")
    if cls is torch.optim.lr_scheduler.StepLR and "step_size" not in kwargs:
        raise OptionsError(
            f"{key}.step_size: missing; the step scheduler needs it (epochs between decays), e.g. step_size: 10"
        )
    if cls is torch.optim.lr_scheduler.CosineAnnealingLR and kwargs.get("T_max") is None:
        kwargs["T_max"] = options.get("engine.nb_epochs", 1)
    required = [p.name for p in list(inspect.signature(cls).parameters.values())[1:]
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if required:
        raise OptionsError(f"{key}.{required[0]}: missing; lr_scheduler '{name}' needs it "
                           f"(required: {', '.join(required)})")
    return plugins.build(cls, key, f"lr_scheduler '{name}'", optimizer, **kwargs)


def _fuse_by_default(cls: type, kwargs: Mapping[str, Any], params: list[torch.Tensor]) -> bool:
    """On CUDA, Adam/AdamW/SGD run fused unless the options choose (``fused``/``foreach``).

    The fused kernels take the engine's device-side skip flag as ``found_inf`` and keep their
    step counts on the device, so a step reads nothing back to the host (docs/gpu.md); the
    non-fused Adam keeps its step count on the CPU and reads it every step.
    """
    if cls not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        return False
    if "fused" in kwargs or "foreach" in kwargs or kwargs.get("differentiable"):
        return False
    return all(p.is_cuda and p.is_floating_point() for p in params)


def factory(model: nn.Module, engine: Any = None) -> Any:
    """Build the optimizer of ``model``'s trainable parameters; ``None`` without an ``optimizer`` section.

    With ``engine``, the scheduler steps (and ``train_epoch.lr`` is logged) on ``train_on_end_epoch``.
    """
    options = engine.options if engine is not None else Options.current()
    oopt = options.get("optimizer")
    if oopt is None:
        return None
    if not isinstance(oopt, Mapping):
        raise OptionsError(f"optimizer: expected a mapping with name and lr (or import), got {oopt!r}")
    if oopt.get("import"):
        return plugins.import_factory(oopt["import"], "optimizer.import")(model, engine)
    name = oopt.get("name")
    if name is None:
        raise OptionsError(
            f"optimizer.name: missing; set it to one of {', '.join(sorted(OPTIMIZERS))} or set optimizer.import"
        )
    cls = plugins.resolve(OPTIMIZERS, name, "optimizer.name")
    kwargs = _kwargs(cls, oopt, "optimizer", f"optimizer '{name}'")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OptionsError(
            "optimizer: the model has no trainable parameters; remove the optimizer section for an eval-only run"
        )
    if _fuse_by_default(cls, kwargs, params):
        kwargs["fused"] = True
    optimizer = plugins.build(cls, "optimizer", f"optimizer '{name}'", params, **kwargs)
    grad_clip = oopt.get("grad_clip")
    bad_number = not isinstance(grad_clip, (int, float)) or isinstance(grad_clip, bool) or grad_clip < 0
    if grad_clip is not None and bad_number:
        raise OptionsError(f"optimizer.grad_clip: expected a max gradient norm >= 0 or null (off), got {grad_clip!r}")
    scheduler = _scheduler(oopt.get("lr_scheduler"), optimizer, options)
    return Optimizer(optimizer, scheduler=scheduler, grad_clip=grad_clip, engine=engine)
