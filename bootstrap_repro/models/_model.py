"""``Model``: a network plus a criterion and a metric per mode (``train`` / ``eval``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bootstrap_repro.errors import OptionsError

__all__ = ["Model", "SimpleModel"]

MODES = ("train", "eval")


def _check_modes(components: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    out = {mode: comp for mode, comp in (components or {}).items() if comp is not None}
    for mode in out:
        if mode not in MODES:
            raise ValueError(f"{what}: unknown mode {mode!r} (valid: {', '.join(MODES)})")
    return out


class Model(nn.Module):
    """``out = model(batch)``: network, then the current mode's criterion and metric.

    ``criterion(net_out, batch)`` returns ``{'loss': tensor, ...}``;
    ``metric(cri_out, net_out, batch)`` returns ``{name: 0-dim tensor}`` and
    runs without autograd.  ``out`` merges the network output (a dict, or
    ``{'net_out': tensor}``), the criterion's and the metric's dicts.  The
    mode is ``'train'`` after ``model.train()`` and ``'eval'`` after
    ``model.eval()``; a mode may have no criterion or metric, but training
    needs a ``'loss'``.
    """

    def __init__(
        self,
        network: nn.Module,
        criterions: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        #: ``{mode: criterion}``; those that are modules are also registered as ``criterion_<mode>``.
        self.criterions = _check_modes(criterions, "criterions")
        #: ``{mode: metric}``; those that are modules are also registered as ``metric_<mode>``.
        self.metrics = _check_modes(metrics, "metrics")
        for prefix, components in (("criterion", self.criterions), ("metric", self.metrics)):
            for mode, comp in components.items():
                if isinstance(comp, nn.Module):
                    self.add_module(f"{prefix}_{mode}", comp)

    @property
    def mode(self) -> str:
        """``'train'`` or ``'eval'``."""
        return "train" if self.training else "eval"

    def run_network(self, batch: Any) -> Any:
        """Call the network on the batch (``SimpleModel`` passes ``batch['data']``)."""
        return self.network(batch)

    def forward(self, batch: Any) -> dict[str, Any]:
        mode = self.mode
        net_out = self.run_network(batch)
        cri_out: Mapping[str, Any] = {}
        if mode in self.criterions:
            result = self.criterions[mode](net_out, batch)
            cri_out = {"loss": result} if isinstance(result, torch.Tensor) else (result or {})
        if mode == "train" and "loss" not in cri_out:
            raise OptionsError(
                "model.criterion: training needs a criterion that returns {'loss': tensor}; "
                "set model.criterion.name (e.g. nll) or model.criterion.import"
            )
        met_out: Mapping[str, Any] = {}
        if mode in self.metrics:
            with torch.no_grad():
                met_out = self.metrics[mode](cri_out, net_out, batch) or {}
        out: dict[str, Any] = dict(net_out) if isinstance(net_out, Mapping) else {"net_out": net_out}
        out.update(cri_out)
        out.update(met_out)
        return out


class SimpleModel(Model):
    """A :class:`Model` whose network receives ``batch['data']`` instead of the batch (seed's ``simple``)."""

    def run_network(self, batch: Any) -> Any:
        return self.network(batch["data"])
