"""``bootstrap.models.networks.data_parallel``: the seed's ``DataParallel`` wrappers.

They reach the wrapped network's attributes (``net.my_attr``), save and load its state dict
without the ``module.`` prefix, and ``DataParallel`` gathers dict outputs.  For several GPUs,
bootstrap-repro's own way is DDP (``--nproc-per-node``, see docs/gpu.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel._functions import Gather

__all__ = ["DataParallel", "DistributedDataParallel", "gather"]


def gather(outputs: Any, target_device: Any, dim: int = 0) -> Any:
    """Gather tensors (also inside dicts, lists and tuples) from several GPUs on ``target_device`` (-1: CPU)."""

    def gather_map(outputs: Any) -> Any:
        out = outputs[0]
        if torch.is_tensor(out):
            return Gather.apply(target_device, dim, *outputs)
        if out is None:
            return None
        if isinstance(out, dict):
            if not all(len(out) == len(d) for d in outputs):
                raise ValueError("gather: all dicts must have the same number of keys")
            return type(out)((k, gather_map([d[k] for d in outputs])) for k in out)
        return type(out)(map(gather_map, zip(*outputs)))

    return gather_map(outputs)


class _ToModule:
    """The seed's wrappers: unknown attributes and the state dict are the wrapped module's."""

    module: nn.Module

    def __getattr__(self, key: str) -> Any:
        try:
            return super().__getattr__(key)  # type: ignore[misc]
        except AttributeError:
            if key == "module":
                raise
            return getattr(self.module, key)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.load_state_dict(*args, **kwargs)


class DataParallel(_ToModule, nn.DataParallel):
    """``nn.DataParallel`` that forwards unknown attributes and state dicts to the wrapped module."""

    def gather(self, outputs: Any, output_device: Any) -> Any:
        return gather(outputs, output_device, dim=self.dim)


class DistributedDataParallel(_ToModule, nn.parallel.DistributedDataParallel):
    """``nn.parallel.DistributedDataParallel`` that forwards unknown attributes and state dicts to the module."""
