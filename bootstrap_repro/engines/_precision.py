"""Mixed precision and determinism settings of a run (``engine.amp``, ``misc.deterministic``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bootstrap_repro.engines._distributed import all_reduce_sum
from bootstrap_repro.engines._sync import allowed_sync
from bootstrap_repro.errors import OptionsError

__all__ = ["Precision", "Determinism", "deterministic_error", "DeviceSkip"]

AMP_MODES = ("none", "bf16", "fp16")


class Precision:
    """Autocast around the forward pass; a gradient scaler for fp16 (its state is checkpointed)."""

    def __init__(self, mode: str, device: torch.device) -> None:
        mode = str(mode or "none").lower()
        if mode not in AMP_MODES:
            raise OptionsError(f"engine.amp: expected one of none, bf16, fp16, got {mode!r}")
        if mode == "fp16" and device.type != "cuda":
            raise OptionsError(
                f"engine.amp: fp16 needs a CUDA device (this run is on {device}); use --engine.amp bf16 on CPU, or none"
            )
        if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise OptionsError(f"engine.amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
        self.mode, self.device = mode, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self) -> Any:
        """The context the forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: Any) -> None:
        """``optimizer.step()``; with fp16, unscaled first and skipped on inf/NaN gradients."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


#: Integer dtypes of each element size: a tensor's bits are restored exactly with integer arithmetic.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _torch_optimizer(optimizer: Any) -> Any:
    """The ``torch.optim.Optimizer`` inside wrappers (``bootstrap_repro.optimizers.Optimizer``, the seed's)."""
    seen = 0
    while not isinstance(optimizer, torch.optim.Optimizer) and hasattr(optimizer, "optimizer") and seen < 8:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


class DeviceSkip:
    """The non-finite-loss rule decided on the device, with no host sync in the batch.

    The rule: a step whose loss is not finite (on any rank) changes no weight and no optimizer
    state, and is counted.  :meth:`flag` returns it as a 0-dim bool tensor on the loss's device
    (summed over ranks under DDP); the backward pass always runs; :meth:`step` then applies the
    step or leaves everything as it was, by one of:

    - ``fp16``: the loss is multiplied by NaN when it is not finite, so every gradient is NaN and
      the ``GradScaler`` skips the step as it does for an overflow (PyTorch's own behaviour: its
      scale backs off; with a non-fused optimizer its ``step`` syncs);
    - ``found_inf``: an optimizer with ``_step_supports_amp_scaling`` (torch's Adam, AdamW, SGD
      with ``fused=True``) gets the flag as ``found_inf``: its kernel skips the update, no copy;
    - ``masked``: any other optimizer: the parameters and state tensors are copied before the
      step and put back after it when the flag is set, with integer arithmetic on their bits
      (exact: no NaN/-0.0 issue; 4 multi-tensor kernels per dtype size; one copy of them in memory).

    The flag is read on the host (:func:`~bootstrap_repro.engines._sync.allowed_sync`) only for a
    step that adds optimizer state or changes a non-tensor one (the first step of a fresh run:
    a skipped step must then leave no state at all), or when the optimizer keeps state tensors on
    another device than the loss (torch's non-fused Adam keeps its step counts in host memory):
    see :attr:`host_reason`.
    """

    def __init__(self, optimizer: Any, precision: Precision, step: Callable[[], Any], distributed: bool,
                 warn: Callable[[str], None] | None = None) -> None:
        self.optimizer, self.precision, self._step, self.distributed = optimizer, precision, step, distributed
        self.warn = warn  # told why, when a step must read the flag on the host for another reason than new state
        self.inner = _torch_optimizer(optimizer)
        if precision.scaler is not None:
            self.kind = "scaler"
        elif getattr(self.inner, "_step_supports_amp_scaling", False):
            self.kind = "found_inf"
        else:
            self.kind = "masked"
        #: Why the last step read the flag on the host (None: it did not).
        self.host_reason: str | None = None
        self._cache: tuple[tuple[int, ...], Any] | None = None  # (ids of the tensors, their groups)

    def flag(self, loss: torch.Tensor) -> torch.Tensor:
        """``True`` (0-dim, on the loss's device) when the loss is not finite here or on another rank."""
        bad = torch.isfinite(loss.detach()).logical_not_()
        if bad.dim():
            bad = bad.reshape(()) if bad.numel() == 1 else bad.any()
        if self.distributed:
            bad = all_reduce_sum(bad.to(torch.float32)) > 0
        return bad

    def backward(self, loss: torch.Tensor, bad: torch.Tensor) -> None:
        if self.kind == "scaler":  # every gradient NaN: the scaler skips the step
            loss = loss * torch.where(bad, float("nan"), 1.0).to(loss.dtype)
        self.precision.backward(loss)

    def step(self, bad: torch.Tensor) -> None:
        self.host_reason = None
        if self.kind == "scaler":
            self.precision.step(self.optimizer)
            return
        state = getattr(self.inner, "state", None)
        groups = getattr(self.inner, "param_groups", None)
        if not isinstance(state, dict) or groups is None:
            self._host_step(bad, f"{type(self.inner).__name__} has no torch optimizer state to restore")
            return
        params = [p for g in groups for p in g["params"] if p.grad is not None]
        before = self._entries(state, params)
        if self.kind == "found_inf":
            self.inner.found_inf = bad.to(torch.float32)
            try:
                self._step()
            finally:
                del self.inner.found_inf
            self._settle(bad, state, params, before, None)
            return
        tensors = [*params, *(v for _, _, v in before if isinstance(v, torch.Tensor))]
        key = tuple(map(id, tensors))
        if self._cache is None or self._cache[0] != key:  # the views and copies of these tensors, made once
            self._cache = (key, self._groups(tensors, bad.device))
        groups_ = self._cache[1]
        if isinstance(groups_, str):
            self._host_step(bad, groups_)
            return
        with torch.no_grad():
            for live, saved in groups_.values():
                torch._foreach_copy_(saved, live)
        self._step()
        if self._settle(bad, state, params, before, groups_):
            return
        with torch.no_grad():
            for live, saved in groups_.values():  # saved := saved - live; * bad; live += saved
                torch._foreach_sub_(saved, live)
                torch._foreach_mul_(saved, bad.to(saved[0].dtype))
                torch._foreach_add_(live, saved)

    # ------------------------------------------------------------------ helpers
    def _host_step(self, bad: torch.Tensor, reason: str) -> None:
        self.host_reason = reason
        if self.warn is not None:
            self.warn(reason)
        with allowed_sync(reason):
            skip = bool(bad)
        if not skip:
            self._step()

    @staticmethod
    def _entries(state: dict[Any, Any], params: list[torch.Tensor]) -> list[tuple[Any, Any, Any]]:
        """``(param state, key, value)`` of the state of ``params`` before the step."""
        out = []
        for p in params:
            s = state.get(p)
            if s:
                out += [(s, k, v) for k, v in s.items()]
        return out

    def _groups(self, tensors: list[torch.Tensor], device: torch.device) -> Any:
        """Integer views of ``tensors`` by element size, with a buffer for each; or why the flag must be read."""
        groups: dict[Any, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for t in tensors:
            if t.device != device:
                return f"{type(self.inner).__name__} keeps state tensors on {t.device}, the loss is on {device}"
            try:
                view = t.detach().view(_BITS[t.element_size()])
            except (KeyError, RuntimeError):
                return f"{type(self.inner).__name__} has a state tensor whose bits cannot be restored ({t.dtype})"
            live, saved = groups.setdefault(view.dtype, ([], []))
            live.append(view)
            saved.append(torch.empty_like(view))
        return groups

    def _settle(self, bad: torch.Tensor, state: dict[Any, Any], params: list[torch.Tensor],
                before: list[tuple[Any, Any, Any]], groups: Any) -> bool:
        """After the step: when it changed the state's structure or a host value, decide on the host.

        Returns True when the step was settled here (kept, or undone exactly).
        """
        changed = any(s.get(k, _MISSING) is not v for s, k, v in before)
        if not changed:
            count = sum(len(state[p]) for p in params if p in state)
            changed = count != len(before)
        if not changed:
            return False
        self.host_reason = "the step created or replaced optimizer state"
        with allowed_sync(self.host_reason):
            skip = bool(bad)
        if skip:
            by_state: dict[int, Any] = {}
            for s, k, v in before:
                by_state[id(s)] = s
                s[k] = v
            keep = {id(s): {k for s2, k, _ in before if s2 is s} for s in by_state.values()}
            for p in params:
                s = state.get(p)
                if s is None:
                    continue
                if id(s) not in keep:
                    del state[p]
                else:
                    for k in [k for k in s if k not in keep[id(s)]]:
                        del s[k]
            if groups is not None:
                with torch.no_grad():
                    for live, saved in groups.values():
                        torch._foreach_copy_(live, saved)
        return True


_MISSING = object()


class Determinism:
    """``misc.deterministic``: deterministic algorithms and cuDNN; else cuDNN autotuning on GPU."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled, self.device = bool(enabled), device
        if self.enabled:
            # Read by cuBLAS when its workspace is created: set before the first GPU matmul.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def describe(self) -> dict[str, Any]:
        """What the record says about the mode that ran."""
        return {"deterministic": self.enabled, "cudnn_benchmark": not self.enabled and self.device.type == "cuda",
                "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Apply the settings for the duration of the loop, then restore the previous ones."""
        saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                 torch.backends.cudnn.benchmark)
        torch.use_deterministic_algorithms(self.enabled)
        torch.backends.cudnn.deterministic = self.enabled
        torch.backends.cudnn.benchmark = self.describe()["cudnn_benchmark"]
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(saved[0])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


_NONDET = re.compile(r"^(?P<op>\S+) does not have a deterministic implementation")


def deterministic_error(exc: BaseException, device: torch.device) -> OptionsError | None:
    """Turn torch's 'no deterministic implementation' error into a one-line options error."""
    m = _NONDET.search(str(exc))
    if not isinstance(exc, RuntimeError) or m is None:
        return None
    return OptionsError(
        f"misc.deterministic: {m.group('op')} has no deterministic implementation on {device}; "
        f"replace that op or run with --misc.deterministic false"
    )
