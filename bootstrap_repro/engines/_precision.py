"""Mixed precision and determinism settings of a run (``engine.amp``, ``misc.deterministic``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import torch

from bootstrap_repro.errors import OptionsError

__all__ = ["Precision", "Determinism", "deterministic_error"]

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
