"""Hook names, in the order the Engine fires them.

The seed's names are kept; the ones it lacked are added: ``train_on_end``,
``eval_on_start`` / ``eval_on_end`` (eval-only runs), ``engine_on_resume``,
``engine_on_checkpoint``, ``engine_on_end_epoch`` and ``engine_on_exception``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bootstrap_repro.errors import HookError, did_you_mean

__all__ = ["HOOKS", "check_hook_name", "adapt_hook"]

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


def check_hook_name(name: str) -> None:
    """Raise :class:`HookError` for a name that no code would ever fire."""
    if name not in HOOKS:
        raise HookError(
            f"unknown hook {name!r}{did_you_mean(name, HOOKS)} "
            f"(valid: bootstrap_repro.engines.HOOKS, e.g. train_on_end_epoch, eval_on_end_epoch)"
        )


def adapt_hook(fn: Callable[..., Any]) -> Callable[[Any], Any]:
    """Return a callable taking the engine: the seed's hooks take no argument."""
    try:
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty
        ]
    except (TypeError, ValueError):  # builtins without a signature
        return lambda engine: fn(engine)
    if params:
        return fn
    return lambda engine: fn()
