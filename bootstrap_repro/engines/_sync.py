"""The sync guard: a test mode that fails on any device-to-host read inside the batch loop.

A read of a device tensor's value on the host (``.item()``, ``bool()``, ``float()``, ``.tolist()``,
``.cpu()``, a boolean-mask index...) makes the host wait for the device: once per batch, it
stalls the GPU's queue.  The Engine reads values only where it must wait anyway: print lines,
the end of an epoch (means, flush, checkpoints).  Set ``engine.sync_guard = SyncGuard()`` and
every such read between a batch's start and its end raises :class:`SyncError` (print lines and
the ``<mode>_on_print`` hooks excepted)::

    engine.sync_guard = SyncGuard()               # on CUDA: CUDA tensors, and torch's own sync check
    engine.sync_guard = SyncGuard(emulate=True)   # on CPU: CPU tensors count as device tensors

On CUDA the guard also sets ``torch.cuda.set_sync_debug_mode('error')`` while armed, which catches
the syncs made inside torch's C++ code.  ``emulate=True`` is for testing without a GPU: every
tensor then counts as a device tensor, except the reads made by ``torch.optim`` itself (the step
counts of non-fused optimizers, host tensors on a GPU too).

A sync that the Engine knowingly takes in a batch (:func:`allowed_sync`, e.g. the one step that
creates the optimizer's state) is recorded in :attr:`SyncGuard.allowed` instead of raising.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from bootstrap_repro.errors import ReproError

__all__ = ["SYNC_FUNCTIONS", "SyncError", "SyncGuard", "allowed_sync"]

_T = torch.Tensor
#: Functions that read a tensor's value on the host (each one waits for the device).
SYNC_FUNCTIONS: dict[Any, str] = {
    _T.item: "Tensor.item", _T.__bool__: "bool(tensor)", _T.__float__: "float(tensor)",
    _T.__int__: "int(tensor)", _T.__index__: "tensor used as an index", _T.__complex__: "complex(tensor)",
    _T.tolist: "Tensor.tolist", _T.numpy: "Tensor.numpy", _T.__array__: "numpy.asarray(tensor)",
    _T.__format__: "format(tensor)", _T.__repr__: "repr(tensor)", _T.cpu: "Tensor.cpu",
    _T.nonzero: "Tensor.nonzero", torch.nonzero: "torch.nonzero", _T.masked_select: "Tensor.masked_select",
    torch.masked_select: "torch.masked_select", torch.unique: "torch.unique", _T.unique: "Tensor.unique",
    torch.unique_consecutive: "torch.unique_consecutive", torch.equal: "torch.equal", _T.equal: "Tensor.equal",
    torch.allclose: "torch.allclose", _T.allclose: "Tensor.allclose", torch.is_nonzero: "torch.is_nonzero",
    _T.is_nonzero: "Tensor.is_nonzero", torch.argwhere: "torch.argwhere",
}
#: Functions that copy to the host only for some arguments (``.to('cpu')``, a boolean-mask index).
_MAYBE = {_T.to: "Tensor.to('cpu')", _T.copy_: "Tensor.copy_ to the host", _T.__getitem__: "boolean-mask index"}

_local = threading.local()


class SyncError(ReproError, RuntimeError):
    """A device-to-host read inside the batch loop while a :class:`SyncGuard` is armed."""


def _tensors(args: Any) -> Iterator[torch.Tensor]:
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


def _to_host(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call of :data:`_MAYBE` copies a tensor's values to the host."""
    if func is _T.__getitem__:  # x[mask] with a boolean mask runs nonzero on the mask
        index = args[1] if len(args) > 1 else None
        items = index if isinstance(index, tuple) else (index,)
        return any(isinstance(t, torch.Tensor) and t.dtype is torch.bool for t in items)
    if func is _T.copy_:  # dst.copy_(src): to the host when dst is a CPU tensor
        return len(args) > 1 and args[0].device.type == "cpu" and isinstance(args[1], torch.Tensor)
    target = kwargs.get("device")
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
        elif isinstance(a, torch.Tensor):
            target = a.device
    return target is not None and torch.device(target).type == "cpu"


class SyncGuard(TorchFunctionMode):
    """Raises :class:`SyncError` on a device-to-host read while armed (see the module doc).

    The Engine arms it at the start of each batch and disarms it for the print line and at the
    end of the batch.  :attr:`batches` counts the armed batches per mode (what the guard covered);
    :attr:`allowed` lists the syncs taken under :func:`allowed_sync`, with where they happened.
    """

    def __init__(self, emulate: bool = False, cuda_sync_debug: bool = True) -> None:
        super().__init__()
        self.emulate = bool(emulate)
        self.cuda_sync_debug = bool(cuda_sync_debug) and torch.cuda.is_available()
        self.armed: str | None = None
        self.batches: Counter[str] = Counter()
        self.allowed: list[tuple[str, str]] = []
        self._entered = 0

    # -------------------------------------------------------------- engine side
    @contextlib.contextmanager
    def watching(self) -> Iterator[SyncGuard]:
        """Active around a loop: the mode is entered; :meth:`arm` / :meth:`disarm` switch the checks."""
        with self:
            _local.guard, previous = self, getattr(_local, "guard", None)
            try:
                yield self
            finally:
                self.disarm()
                _local.guard = previous

    def arm(self, where: str, mode: str | None = None) -> None:
        """Fail on any read from now on (``where`` names the batch in the error)."""
        if mode is not None:
            self.batches[mode] += 1
        self.armed = where
        if self.cuda_sync_debug:
            torch.cuda.set_sync_debug_mode("error")

    def disarm(self) -> None:
        """Allow reads (print lines, epoch ends)."""
        if self.armed is not None and self.cuda_sync_debug:
            torch.cuda.set_sync_debug_mode(0)
        self.armed = None

    @contextlib.contextmanager
    def allow(self, reason: str) -> Iterator[None]:
        where = self.armed
        if where is None:
            yield
            return
        self.allowed.append((reason, where))
        self.disarm()
        try:
            yield
        finally:
            self.arm(where)

    # -------------------------------------------------------------- the check
    def _is_device(self, t: torch.Tensor) -> bool:
        return t.device.type != "cpu" or self.emulate

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.armed is not None:
            name = SYNC_FUNCTIONS.get(func)
            if name is None and func in _MAYBE and _to_host(func, args, kwargs):
                name = _MAYBE[func]
            if name is not None and any(self._is_device(t) for t in _tensors(args)):
                caller = _caller()
                if not (self.emulate and caller[1].startswith("torch.optim")):
                    raise SyncError(
                        f"device-to-host read inside the batch loop ({self.armed}): {name} at {caller[0]}; "
                        f"keep values on the device until a print line or the epoch end (engine.sync_guard)"
                    )
        return func(*args, **kwargs)


def _caller() -> tuple[str, str]:
    """``file:line`` and module of the first frame outside torch and this module."""
    frame = sys._getframe(2)
    here = __name__
    while frame is not None:
        mod = str(frame.f_globals.get("__name__", ""))
        if mod != here and not (mod == "torch" or mod.startswith(("torch.", "torch._"))) or mod.startswith("torch.optim"):
            path = frame.f_code.co_filename
            short = os.sep.join(path.split(os.sep)[-3:])
            return f"{short}:{frame.f_lineno}", mod
        frame = frame.f_back  # type: ignore[assignment]
    return "?", ""


def allowed_sync(reason: str) -> contextlib.AbstractContextManager[None]:
    """A sync the Engine takes on purpose inside a batch: recorded by an armed guard, not an error."""
    guard = getattr(_local, "guard", None)
    if guard is None or guard.armed is None:
        return contextlib.nullcontext()
    return guard.allow(reason)
