"""Batches to the device: :func:`to_device`, and :class:`CudaPrefetcher`, one batch ahead on a side stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["CudaPrefetcher", "to_device"]


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device, non_blocking) for v in batch]
    if isinstance(batch, tuple):
        return tuple(to_device(v, device, non_blocking) for v in batch)
    return batch


def _record_stream(batch: Any, stream: Any) -> None:
    """Tell the caching allocator that ``stream`` uses the batch's memory (it was made on another)."""
    if isinstance(batch, torch.Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, Mapping):
        for v in batch.values():
            _record_stream(v, stream)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            _record_stream(v, stream)


_END = object()


class CudaPrefetcher:
    """The batches of ``batches``, on a CUDA ``device``, copied one batch ahead.

    The copy of batch ``i + 1`` is queued on a side stream (``non_blocking``; from pinned memory
    it does not block the host) before batch ``i`` is handed out, so it runs while batch ``i``
    computes; the compute stream waits for the copy (``wait_stream``) and the memory is recorded
    on it (``record_stream``).  No host sync.  ``len()`` is the wrapped loader's.
    """

    def __init__(self, batches: Iterable[Any], device: torch.device) -> None:
        self.batches, self.device = batches, device

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        side = torch.cuda.Stream(self.device)
        it = iter(self.batches)

        def load() -> Any:
            try:
                batch = next(it)
            except StopIteration:
                return _END
            with torch.cuda.stream(side):
                return to_device(batch, self.device, non_blocking=True)

        nxt = load()
        while nxt is not _END:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(side)
            _record_stream(nxt, current)
            batch, nxt = nxt, load()
            yield batch
