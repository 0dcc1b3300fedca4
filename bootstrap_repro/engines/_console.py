"""The progress line printed every ``engine.print_freq`` batches (the seed's console output).

::

    [train] epoch 1/5 batch 11/64 loss 0.6931 acctop1 50.00 | 1234 items/s, 3.1 ms/batch (load 0.4 ms) | ETA epoch 0:00:12

Epoch and batch are 1-based; the values are the printed batch's own; speed and load are the
means over the batches since the previous line; the ETA is for the rest of the epoch at that speed.
The engine calls :meth:`ConsoleLine.line` at print batches only: reading the values is a
device-to-host copy (one for all of them), never paid on the other batches.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["ConsoleLine", "format_number"]


def format_number(value: float) -> str:
    """``0.6931``, ``50.00``, ``1.235e+07``, ``nan``: 4 decimals below 10, 2 up to 1e6, then 4 digits."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size < 10:
        return f"{value:.4f}"
    if size < 1e6:
        return f"{value:.2f}"
    return f"{value:.4g}"


def _host_values(out: Mapping[str, Any]) -> dict[str, float]:
    """The scalar outputs as floats, with one device-to-host copy for all the tensors."""
    names, tensors, res = [], [], {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor):
            if v.numel() == 1 and v.dtype is not torch.bool:
                if v.is_cpu:  # in host memory already: read in place
                    res[k] = float(v.item())
                else:
                    names.append(k)
                    tensors.append(v.detach().reshape(()).to(torch.float64))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            res[k] = float(v)
    if tensors:
        try:
            host = torch.stack(tensors).tolist()
        except RuntimeError:  # tensors on several devices
            host = [t.item() for t in tensors]
        res.update(zip(names, host))
    return {k: res[k] for k in out if k in res}  # the model's order


class ConsoleLine:
    """Formats the progress lines of one epoch of one mode.

    ``start`` is the time (``time.perf_counter()``) the epoch's loop began; each :meth:`line`
    measures from the previous one.
    """

    def __init__(self, mode: str, epoch: int, nb_epochs: int, nb_batches: int, start: float) -> None:
        self.head = f"[{mode}] epoch {epoch + 1}/{nb_epochs} batch "
        self.nb_batches = nb_batches
        self._last_batch, self._last_time, self._last_load = -1, start, 0.0

    def line(self, batch: int, out: Mapping[str, Any], sizes: Sequence[int], load: float,
             clock: Callable[[], float] = time.perf_counter) -> str:
        """The line of batch ``batch`` (0-based).

        ``out`` is its model output, ``sizes`` the sizes of the epoch's batches so far, ``load``
        the total time spent waiting for batches since the epoch began.  The values are read
        first, so that the time taken after (``clock()``) includes the device's pending work.
        """
        shown = self.values(out)
        head = f"{self.head}{batch + 1}/{self.nb_batches or '?'}" + (f" {shown}" if shown else "")
        return f"{head} | {self.timing(batch, sizes, clock(), load)}"

    def values(self, out: Mapping[str, Any]) -> str:
        """``loss 0.6931 acctop1 50.00``: the batch's scalar outputs (one host copy)."""
        return " ".join(f"{k} {format_number(v)}" for k, v in _host_values(out).items())

    def timing(self, batch: int, sizes: Sequence[int], now: float, load: float) -> str:
        """``1234 items/s, 3.1 ms/batch (load 0.4 ms) | ETA epoch 0:00:12`` since the previous line."""
        done = batch - self._last_batch
        elapsed = max(now - self._last_time, 1e-9)
        items = sum(sizes[self._last_batch + 1: batch + 1])
        per_batch = elapsed / done
        waited = (load - self._last_load) / done
        self._last_batch, self._last_time, self._last_load = batch, now, load
        speed = f"{items / elapsed:.0f} items/s, " if items else ""
        text = f"{speed}{per_batch * 1e3:.1f} ms/batch (load {waited * 1e3:.1f} ms)"
        if self.nb_batches:
            left = max(self.nb_batches - 1 - batch, 0) * per_batch
            text += f" | ETA epoch {datetime.timedelta(seconds=round(left))}"
        return text
