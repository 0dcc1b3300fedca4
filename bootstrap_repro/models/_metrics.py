"""Built-in metrics: ``metric(cri_out, net_out, batch) -> {name: 0-dim tensor}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bootstrap_repro.errors import OptionsError

__all__ = ["Accuracy", "accuracy"]


def accuracy(scores: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Top-k accuracies in percent (0-100), as 0-dim float tensors on ``scores.device``.

    A ``k`` at least the number of classes counts every item as correct (100 %).
    Computed without a host sync.
    """
    scores = scores.detach()
    nb_classes = scores.shape[1]
    maxk = min(max(topk), nb_classes)
    pred = scores.topk(maxk, dim=1).indices  # [B, maxk]
    correct = pred.eq(target.view(-1, 1))  # at most one True per row
    scale = 100.0 / max(target.shape[0], 1)
    # hits within the top 1, 2, ..., maxk: exact integer counts in float32, four kernels for any topk
    within = correct.sum(0, dtype=torch.float32).cumsum(0).mul_(scale)
    return [within[min(k, nb_classes) - 1] for k in topk]


class Accuracy(nn.Module):
    """Top-k accuracy of ``net_out`` vs ``batch[target_key]``: keys ``acctop1``, ``acctop5``... in percent."""

    def __init__(self, topk: Sequence[int] = (1, 5), target_key: str = "class_id") -> None:
        super().__init__()
        self.topk = [int(k) for k in topk]
        if not self.topk or min(self.topk) < 1:
            raise OptionsError(f"model.metric.topk: expected a list of positive integers, got {list(topk)!r}")
        self.target_key = target_key

    def forward(self, cri_out: Any, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        values = accuracy(net_out, batch[self.target_key], self.topk)
        return {f"acctop{k}": v for k, v in zip(self.topk, values)}
