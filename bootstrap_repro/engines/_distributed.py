"""Distributed data parallel inside one process of a ``torchrun`` launch.

``torchrun`` (``torch.distributed.run``) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`dist_info` reads them and :func:`init_process_group`
joins the group (NCCL on GPU, gloo on CPU).  Training splits get a padded
``DistributedSampler`` (every rank takes the same number of steps, as DDP
needs); eval splits get an unpadded shard so that reduced epoch metrics equal
what one process computes on the whole split.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

__all__ = ["DistInfo", "dist_info", "init_process_group", "ShardSampler", "shard_dataset", "unwrap", "all_reduce_sum"]


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size of this process (1 process when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read torchrun's environment variables.

    A process alone (``WORLD_SIZE`` unset or 1) is rank 0 whatever ``RANK`` says: a stray ``RANK=1``
    left in a shell must not make a single run write no checkpoint.
    """
    try:
        info = DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return DistInfo()
    return info if info.enabled else DistInfo()


def init_process_group(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group; on GPU, the device becomes ``cuda:LOCAL_RANK``."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of an (unshuffled) eval split: no padding, no repeats."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))

    def set_epoch(self, epoch: int) -> None:  # same shard every epoch
        pass


def shard_dataset(dataset: Any, info: DistInfo, train: bool) -> None:
    """Give ``dataset`` (a :class:`~bootstrap_repro.datasets.Dataset`) this rank's sampler."""
    if getattr(dataset, "sampler", None) is not None or not hasattr(dataset, "sampler"):
        return
    if train:
        dataset.sampler = DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank,
            shuffle=bool(getattr(dataset, "shuffle", True)), seed=int(getattr(dataset, "seed", 0)),
        )
    else:
        dataset.sampler = ShardSampler(len(dataset), info.rank, info.world_size)


def unwrap(model: Any) -> Any:
    """The module inside a ``DistributedDataParallel`` (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks (identity outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
