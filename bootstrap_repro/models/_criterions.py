"""Built-in criterions: ``criterion(net_out, batch) -> {'loss': 0-dim tensor}``.

Class targets may be ``[B]`` or the seed's ``[B, 1]``.  :class:`TorchLoss` wraps any
``torch.nn`` loss taking ``(input, target)`` (``model.criterion.name: MSELoss``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NLLLoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "TorchLoss", "torch_losses", "class_target"]


def class_target(net_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A class-index target as the loss wants it: the seed's ``[B, 1]`` (or ``[B, 1, ...]``) loses its dim 1."""
    if target.dim() == net_out.dim() and target.dim() > 1 and target.shape[1] == 1 and not target.is_floating_point():
        return target.squeeze(1)
    return target


class NLLLoss(nn.Module):
    """Negative log-likelihood of ``batch[target_key]`` under log-probabilities ``net_out``."""

    def __init__(self, target_key: str = "class_id") -> None:
        super().__init__()
        self.target_key = target_key

    def forward(self, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss": F.nll_loss(net_out, class_target(net_out, batch[self.target_key]))}


class CrossEntropyLoss(nn.Module):
    """Cross-entropy of ``batch[target_key]`` given scores ``net_out``.

    On the built-in networks' log-probabilities it equals :class:`NLLLoss`
    (``log_softmax`` is idempotent).
    """

    def __init__(self, target_key: str = "class_id", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.target_key = target_key
        self.label_smoothing = float(label_smoothing)

    def forward(self, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        target = class_target(net_out, batch[self.target_key])
        loss = F.cross_entropy(net_out, target, label_smoothing=self.label_smoothing)
        return {"loss": loss}


class BCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy of ``net_out`` read as logits vs a float target.

    The target is ``batch['target']`` if present, else ``batch['class_id']``
    (0/1); a ``[B, 1]`` output is matched to a ``[B]`` target.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight: torch.Tensor | None
        self.register_buffer("pos_weight", None if pos_weight is None else torch.tensor(float(pos_weight)))

    def forward(self, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        target = batch["target"] if "target" in batch else batch["class_id"]
        if net_out.dim() == target.dim() + 1 and net_out.shape[-1] == 1:
            net_out = net_out.squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(net_out, target.to(net_out.dtype), pos_weight=self.pos_weight)
        return {"loss": loss}


#: torch losses whose target holds class indices (kept integer; ``[B, 1]`` squeezed).
INDEX_TARGETS = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss", "MultiLabelMarginLoss")


@functools.cache
def torch_losses() -> dict[str, type[nn.Module]]:
    """The ``torch.nn`` loss classes called as ``loss(input, target)``, by class name."""
    out = {}
    for name in dir(nn):
        cls = getattr(nn, name)
        if isinstance(cls, type) and issubclass(cls, nn.modules.loss._Loss) and name.endswith("Loss"):
            params = list(inspect.signature(cls.forward).parameters.values())[1:]
            if len([p for p in params if p.default is p.empty]) == 2:
                out[name] = cls
    return out


class TorchLoss(nn.Module):
    """A ``torch.nn`` loss on ``net_out`` and the target: ``batch[target_key]``, else ``'target'``, else ``'class_id'``.

    A class-index target stays integer (``[B, 1]`` is squeezed); any other target is cast to
    ``net_out``'s dtype and, when it has as many values, reshaped like it (``[B]`` vs ``[B, 1]``).
    """

    def __init__(self, loss: nn.Module, target_key: str | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.target_key = target_key
        self.index_target = type(loss).__name__ in INDEX_TARGETS

    @staticmethod
    def tensor_args(kwargs: dict[str, Any]) -> dict[str, Any]:
        """Option values for torch's tensor arguments (``weight``, ``pos_weight``) as tensors."""
        return {k: torch.as_tensor(v, dtype=torch.float32) if k in ("weight", "pos_weight") and v is not None else v
                for k, v in kwargs.items()}

    def forward(self, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        key = self.target_key or ("target" if "target" in batch else "class_id")
        target = batch[key]
        if self.index_target:
            target = class_target(net_out, target)
        else:
            if target.dtype != net_out.dtype:
                target = target.to(net_out.dtype)
            if target.shape != net_out.shape and target.numel() == net_out.numel():
                target = target.reshape(net_out.shape)
        return {"loss": self.loss(net_out, target)}
