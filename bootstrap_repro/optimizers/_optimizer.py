"""``Optimizer``: a torch optimizer with optional gradient clipping and a per-epoch LR scheduler."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Optimizer"]


class Optimizer:
    """Wraps ``optimizer`` (a ``torch.optim.Optimizer``).

    :meth:`step` clips the global gradient norm to ``grad_clip`` first (when
    set), with no host sync.  The ``scheduler`` (a ``torch.optim.lr_scheduler``)
    steps once per training epoch, at its *end* (:meth:`end_epoch`), so epoch 0
    runs at the base lr.  With an ``engine``, :meth:`end_epoch` is registered
    on ``train_on_end_epoch``; it logs ``train_epoch.lr`` (the lr the epoch ran
    with) then steps the scheduler.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        grad_clip: float | None = None,
        engine: Any = None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = float(grad_clip) if grad_clip else None
        self.engine = engine
        if engine is not None:
            engine.register_hook("train_on_end_epoch", self.end_epoch)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's parameter groups."""
        return self.optimizer.param_groups

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def parameters(self) -> Iterable[torch.Tensor]:
        """Every parameter the optimizer updates."""
        return (p for group in self.optimizer.param_groups for p in group["params"])

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none=True``)."""
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Clip gradients if ``grad_clip`` is set, then update the parameters."""
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(self.parameters()), self.grad_clip, foreach=True)
        return self.optimizer.step(closure)

    def end_epoch(self, engine: Any = None) -> None:
        """Log the epoch's lr as ``train_epoch.lr``, then step the scheduler (if any).

        The ``train_on_end_epoch`` hook; ``engine`` is accepted and unused.
        """
        log_value = getattr(getattr(self.engine, "logger", None), "log_value", None)
        if callable(log_value):
            log_value("train_epoch.lr", self.lr)
        if self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's and the scheduler's states."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def __repr__(self) -> str:
        sched = type(self.scheduler).__name__ if self.scheduler is not None else None
        name = type(self.optimizer).__name__
        return f"Optimizer({name}, lr={self.lr}, scheduler={sched}, grad_clip={self.grad_clip})"
