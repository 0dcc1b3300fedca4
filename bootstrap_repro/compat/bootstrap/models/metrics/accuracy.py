"""``bootstrap.models.metrics.accuracy``: the seed's ``Accuracy`` metric and ``accuracy`` function.

Seed projects import them for metrics of their own (``from bootstrap.models.metrics.accuracy import
accuracy``).  ``Accuracy`` logs the seed's names, ``accuracy_top1``, ``accuracy_top5``... (the
built-in ``model.metric.name: accuracy`` logs bootstrap-repro's ``acctop1``: see docs/migrating.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bootstrap_repro.models._metrics import Accuracy as _NativeAccuracy
from bootstrap_repro.models._metrics import accuracy as _native_accuracy

__all__ = ["Accuracy", "accuracy"]


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1, 5),
             ignore_index: int | None = None) -> list[torch.Tensor]:
    """Top-k accuracies of ``output`` (``[B, C]`` scores) for ``target`` (``[B]`` or ``[B, 1]``), in percent.

    As the seed's: a list of 0-dim tensors, one per ``k``; items whose target is ``ignore_index`` are
    left out.  Unlike the seed's, a ``k`` above the number of classes counts 100 % (the seed raised).
    """
    target = target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        output, target = output[keep], target[keep]
    return _native_accuracy(output, target, topk)


class Accuracy(_NativeAccuracy):
    """The seed's top-k accuracy of ``net_out`` vs ``batch['class_id']``: ``{'accuracy_top<k>': value}``."""

    def __init__(self, topk: Sequence[int] = (1, 5)) -> None:
        super().__init__(topk)

    def forward(self, cri_out: Any, net_out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        values = accuracy(net_out, batch[self.target_key], self.topk)
        return {f"accuracy_top{k}": v for k, v in zip(self.topk, values)}
