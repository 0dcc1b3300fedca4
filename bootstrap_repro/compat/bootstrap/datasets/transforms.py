"""``bootstrap.datasets.transforms``: the seed's batch transforms (collate functions and device moves).

Every transform of bootstrap.pytorch 0.0.13 is here with the same behaviour, written for current
torch: ``collections.abc``, no debugger on a failed stack, ``Variable`` is the tensor itself,
``PadTensors`` pads tensors of any rank, and ``StackTensors(use_shared_memory=True)`` stacks as
usual (DataLoader workers already send batches through shared memory).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "Compose",
    "ListDictsToDictLists",
    "PadTensors",
    "StackTensors",
    "CatTensors",
    "ToCuda",
    "ToCpu",
    "ToVariable",
    "ToDetach",
    "SortByKey",
]


def _is_tensor_list(batch: Any) -> bool:
    return isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) > 0 and torch.is_tensor(batch[0])


def _selected(key: Any, use_keys: Sequence[Any], avoid_keys: Sequence[Any]) -> bool:
    """The seed's rule: ``use_keys`` when given, else every key but ``avoid_keys``."""
    return key in use_keys if use_keys else key not in avoid_keys


class Compose:
    """Apply several batch transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = transforms

    def __call__(self, batch: Any) -> Any:
        for transform in self.transforms:
            batch = transform(batch)
        return batch


class ListDictsToDictLists:
    """A list of item dicts -> a dict of lists (recursively)."""

    def __call__(self, batch: Any) -> Any:
        return self.ld_to_dl(batch)

    def ld_to_dl(self, batch: Any) -> Any:
        if len(batch) > 0 and isinstance(batch[0], Mapping):
            return {key: self.ld_to_dl([d[key] for d in batch]) for key in batch[0]}
        return batch


class PadTensors:
    """Pad the tensors of each list to the largest size of the list with ``value``."""

    def __init__(self, value: float = 0, use_keys: Sequence[Any] | None = None, avoid_keys: Sequence[Any] | None = None) -> None:
        self.value = value
        self.use_keys = list(use_keys or [])
        self.avoid_keys = [] if self.use_keys else list(avoid_keys or [])

    def __call__(self, batch: Any) -> Any:
        return self.pad_tensors(batch)

    def pad_tensors(self, batch: Any) -> Any:
        if isinstance(batch, Mapping):
            return {key: self.pad_tensors(value) if _selected(key, self.use_keys, self.avoid_keys) else value
                    for key, value in batch.items()}
        if _is_tensor_list(batch):
            max_size = torch.Size(max(item.size(i) for item in batch) for i in range(batch[0].dim()))
            padded = []
            for item in batch:
                if item.size() != max_size:
                    new = item.new_full(max_size, self.value)
                    new[tuple(slice(0, s) for s in item.shape)] = item
                    item = new
                padded.append(item)
            return padded
        return batch


class StackTensors:
    """Stack each list of tensors into one tensor (except under ``avoid_keys``)."""

    def __init__(self, use_shared_memory: bool = False, avoid_keys: Sequence[Any] | None = None) -> None:
        self.use_shared_memory = use_shared_memory
        self.avoid_keys = list(avoid_keys or [])

    def __call__(self, batch: Any) -> Any:
        return self.stack_tensors(batch)

    def stack_tensors(self, batch: Any, key: Any = None) -> Any:
        if isinstance(batch, Mapping):
            return {k: v if k in self.avoid_keys else self.stack_tensors(v, key=k) for k, v in batch.items()}
        if _is_tensor_list(batch):
            return torch.stack(list(batch), 0)
        return batch


class CatTensors:
    """Concatenate each list of tensors along dim 0; adds ``batch_id`` (the item of each row)."""

    def __init__(self, use_shared_memory: bool = False, use_keys: Sequence[Any] | None = None,
                 avoid_keys: Sequence[Any] | None = None) -> None:
        self.use_shared_memory = use_shared_memory
        self.use_keys = list(use_keys or [])
        self.avoid_keys = [] if self.use_keys else list(avoid_keys or [])

    def __call__(self, batch: Any) -> Any:
        return self.cat_tensors(batch)

    def cat_tensors(self, batch: Any) -> Any:
        if isinstance(batch, Mapping):
            out: dict[Any, Any] = {}
            for key, value in batch.items():
                if _selected(key, self.use_keys, self.avoid_keys):
                    out[key] = self.cat_tensors(value)
                    if "batch_id" not in out and _is_tensor_list(value):
                        out["batch_id"] = torch.cat([i * torch.ones(x.size(0)) for i, x in enumerate(value)], 0)
                else:
                    out[key] = value
            return out
        if _is_tensor_list(batch):
            return torch.cat(list(batch), 0)
        return batch


class _Map:
    """Apply :meth:`leaf` to every tensor of a batch (dicts and lists of tensors are walked)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, batch: Any) -> Any:
        return self.walk(batch)

    def leaf(self, tensor: torch.Tensor) -> Any:
        raise NotImplementedError

    def walk(self, batch: Any) -> Any:
        if isinstance(batch, Mapping):
            return {key: self.walk(value) for key, value in batch.items()}
        if torch.is_tensor(batch):
            return self.leaf(batch)
        if _is_tensor_list(batch):
            return [self.walk(value) for value in batch]
        return batch


class ToCuda(_Map):
    """Move every tensor to the current CUDA device (non-blocking)."""

    def leaf(self, tensor: torch.Tensor) -> Any:
        return tensor.cuda(non_blocking=True)

    def to_cuda(self, batch: Any) -> Any:
        return self.walk(batch)


class ToCpu(_Map):
    """Move every tensor to the CPU."""

    def leaf(self, tensor: torch.Tensor) -> Any:
        return tensor.cpu()

    def to_cpu(self, batch: Any) -> Any:
        return self.walk(batch)


class ToVariable(_Map):
    """The seed wrapped tensors in ``Variable`` (now the tensor itself); ``volatile=True`` detaches them."""

    def __init__(self, volatile: bool = False) -> None:
        self.volatile = volatile

    def leaf(self, tensor: torch.Tensor) -> Any:
        return tensor.detach() if self.volatile else tensor

    def to_variable(self, batch: Any) -> Any:
        return self.walk(batch)


class ToDetach(_Map):
    """Detach every tensor in place (``detach_``)."""

    def leaf(self, tensor: torch.Tensor) -> Any:
        return tensor.detach_()

    def to_detach(self, batch: Any) -> Any:
        return self.walk(batch)


class SortByKey:
    """Sort every list of the batch by ``batch[key]``, in decreasing order.

    As in the seed, the order is always decreasing (``reverse`` is kept but not read), so results match.
    """

    def __init__(self, key: Any = "lengths", reverse: bool = True) -> None:
        self.key = key
        self.reverse = True
        self.i = 0
        self.sort_keys: list[Any] = []

    def __call__(self, batch: Any) -> Any:
        self.set_sort_keys(batch[self.key])
        return self.sort_by_key(batch)

    def set_sort_keys(self, sort_keys: Sequence[Any]) -> None:
        self.i = 0
        self.sort_keys = list(sort_keys)

    def get_key(self, _: Any) -> Any:
        key = self.sort_keys[self.i]
        self.i = (self.i + 1) % len(self.sort_keys)
        return key

    def sort_by_key(self, batch: Any) -> Any:
        if isinstance(batch, Mapping):
            return {key: self.sort_by_key(value) for key, value in batch.items()}
        if type(batch) is list:
            return sorted(batch, key=self.get_key, reverse=self.reverse)
        return batch
