"""Built-in criterions: ``criterion(net_out, batch) -> {'loss': 0-dim tensor}``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NLLLoss", "CrossEntropyLoss", "BCEWithLogitsLoss"]


class NLLLoss(nn.Module):
    """Negative log-likelihood of ``batch[target_key]`` under log-probabilities ``net_out``."""

    def __init__(self, target_key: str = "class_id") -> None:
        super().__init__()
        self.target_key = target_key

    def forward(self, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss": F.nll_loss(net_out, batch[self.target_key])}


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
        loss = F.cross_entropy(net_out, batch[self.target_key], label_smoothing=self.label_smoothing)
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
