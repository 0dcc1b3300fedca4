"""Built-in networks: they read ``batch['data']`` (or take a tensor) and return log-probabilities (or logits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bootstrap_repro.errors import OptionsError

__all__ = ["MLP", "LeNet", "batch_data"]


OUTPUTS = ("log_softmax", "logits")


def batch_data(batch: Any) -> torch.Tensor:
    """``batch['data']`` for a dict batch, or the batch itself if it is a tensor."""
    return batch["data"] if type(batch) is dict or isinstance(batch, Mapping) else batch  # a dict skips the ABC check


def _check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise OptionsError(f"model.network.output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
    return output


def _finish(scores: torch.Tensor, output: str) -> torch.Tensor:
    return F.log_softmax(scores, dim=1) if output == "log_softmax" else scores


class MLP(nn.Module):
    """Fully connected layers on the flattened input; outputs ``log_softmax`` scores.

    ``input_dim`` is the number of features per item (64 for the 8x8 digits;
    the model factory derives it from the dataset when the option is not set).
    ``hidden`` is one width or a list of widths (``[]``: a linear model).
    ``output: logits`` returns raw scores instead (for ``bce``, e.g. with ``nb_classes: 1``).
    """

    def __init__(
        self,
        input_dim: int = 64,
        hidden: int | Sequence[int] = 64,
        nb_classes: int = 10,
        dropout: float = 0.0,
        output: str = "log_softmax",
    ) -> None:
        super().__init__()
        self.output = _check_output(output)
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        self.input_dim, self.nb_classes = int(input_dim), int(nb_classes)
        layers: list[nn.Module] = []
        prev = self.input_dim
        for width in widths:
            layers += [nn.Linear(prev, int(width)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(float(dropout)))
            prev = int(width)
        layers.append(nn.Linear(prev, self.nb_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, batch: Any) -> torch.Tensor:
        x = batch_data(batch)
        if x.dim() != 2:  # a [B, features] batch is used as it is (flatten would return it unchanged)
            x = x.flatten(1)
        if x.shape[1] != self.input_dim:
            raise OptionsError(
                f"model.network.input_dim: is {self.input_dim} but batch['data'] has {x.shape[1]} "
                f"features per item; set model.network.input_dim: {x.shape[1]}"
            )
        return _finish(self.layers(x), self.output)


class LeNet(nn.Module):
    """A small conv net for ``[C, H, W]`` images with H, W >= 4 (8x8 digits, 28x28 MNIST...).

    Two conv(3x3)+ReLU+maxpool(2) blocks, a global average pool (a mean, which
    stays deterministic on CUDA, unlike ``AdaptiveAvgPool2d``'s backward), then
    ``hidden`` units and ``nb_classes`` log-probabilities (or raw scores with ``output: logits``).
    """

    def __init__(
        self,
        nb_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        in_channels: int = 1,
        hidden: int = 128,
        dropout: float = 0.0,
        output: str = "log_softmax",
    ) -> None:
        super().__init__()
        self.output = _check_output(output)
        c1, c2 = (int(c) for c in channels)
        self.nb_classes = int(nb_classes)
        self.features = nn.Sequential(
            nn.Conv2d(int(in_channels), c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2, int(hidden)), nn.ReLU(), nn.Dropout(float(dropout)), nn.Linear(int(hidden), self.nb_classes)
        )

    def forward(self, batch: Any) -> torch.Tensor:
        x = batch_data(batch)
        if x.dim() == 3:  # [B, H, W] -> [B, 1, H, W]
            x = x.unsqueeze(1)
        x = self.features(x).mean(dim=(2, 3))
        return _finish(self.classifier(x), self.output)
