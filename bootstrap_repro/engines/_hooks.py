"""Hook names, in the order the Engine fires them.

The seed's names are kept; the ones it lacked are added: ``train_on_end``,
``eval_on_start`` / ``eval_on_end`` (eval-only runs), ``engine_on_resume``,
``engine_on_checkpoint``, ``engine_on_end_epoch`` and ``engine_on_exception``.
Other modes (``engine.eval_epoch(..., mode='val')``, a dataset split ``'test'``)
fire ``<mode>_on_<event>``: those names are valid for ``val``, ``test`` and the
engine's dataset keys; any other name is a typo and raises.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from bootstrap_repro.errors import HookError, did_you_mean

__all__ = ["HOOKS", "MODE_EVENTS", "hook_names", "check_hook_name", "adapt_hook"]

TRAIN_HOOKS = (
    "train_on_start",
    "train_on_start_epoch",
    "train_on_start_batch",
    "train_on_forward",
    "train_on_backward",
    "train_on_update",
    "train_on_print",
    "train_on_end_batch",
    "train_on_end_epoch",
    "train_on_flush",
    "train_on_end",
)
EVAL_HOOKS = (
    "eval_on_start",
    "eval_on_start_epoch",
    "eval_on_start_batch",
    "eval_on_forward",
    "eval_on_print",
    "eval_on_end_batch",
    "eval_on_end_epoch",
    "eval_on_flush",
    "eval_on_end",
)
ENGINE_HOOKS = (
    "engine_on_resume",  # a checkpoint was loaded (engine.state.resumed_from)
    "engine_on_checkpoint",  # a checkpoint save started (engine.state.checkpoint); engine.checkpointer.wait() = on disk
    "engine_on_end_epoch",  # train + eval + checkpoints of an epoch are done
    "engine_on_exception",  # the run is failing (engine.state.exception)
)
#: Every valid hook name.
HOOKS: tuple[str, ...] = TRAIN_HOOKS + EVAL_HOOKS + ENGINE_HOOKS


#: The events of a mode other than train/eval: ``<mode>_on_<event>``.
MODE_EVENTS = (
    "start", "start_epoch", "start_batch", "forward", "backward", "update", "print", "end_batch",
    "end_epoch", "flush", "end",
)
#: Split names whose hooks are always valid, besides the engine's dataset keys.
OTHER_MODES = ("val", "test")


def hook_names(modes: Iterable[str] = ()) -> tuple[str, ...]:
    """Every valid name: :data:`HOOKS`, then ``<mode>_on_<event>`` for ``val``, ``test`` and ``modes``."""
    others = [m for m in dict.fromkeys((*OTHER_MODES, *modes)) if m not in ("train", "eval", "engine")]
    return HOOKS + tuple(f"{mode}_on_{event}" for mode in others for event in MODE_EVENTS)


def check_hook_name(name: str, modes: Iterable[str] = ()) -> None:
    """Raise :class:`HookError` for a name that no code would ever fire (``modes``: the engine's other modes)."""
    if name in HOOKS:
        return
    valid = hook_names(modes)
    if name not in valid:
        raise HookError(
            f"unknown hook {name!r}{did_you_mean(name, valid)} "
            f"(valid: bootstrap_repro.engines.HOOKS, e.g. train_on_end_epoch, eval_on_end_epoch)"
        )


def adapt_hook(fn: Callable[..., Any], engine: Any) -> Callable[[], Any]:
    """``fn`` as a callable taking no argument: the seed's hooks take none, the others get ``engine``."""
    try:
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty
        ]
    except (TypeError, ValueError):  # builtins without a signature
        return functools.partial(fn, engine)
    return functools.partial(fn, engine) if params else fn
