"""``engines.factory()``: the Engine described by the options."""

from __future__ import annotations

from typing import Any

import torch

from bootstrap_repro.engines._distributed import dist_info, init_process_group
from bootstrap_repro.engines._engine import Engine
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.plugins import import_factory, resolve

__all__ = ["factory", "resolve_device"]

#: The seed's engine names; both are the same loop here.
ENGINES: dict[str, type[Engine]] = {"default": Engine, "logger": Engine}


def resolve_device(options: Any) -> torch.device:
    """``engine.device`` (auto | cpu | cuda | cuda:N), or the seed's ``misc.cuda``."""
    want = str(options.get("engine.device", "auto") or "auto")
    cuda_flag = options.get("misc.cuda")
    if want == "auto":
        if cuda_flag is False:
            want = "cpu"
        elif cuda_flag is True:
            want = "cuda"
        else:
            want = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(want)
    except RuntimeError:
        raise OptionsError(f"engine.device: expected auto, cpu, cuda or cuda:N, got {want!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            key, fix = ("misc.cuda", "--misc.cuda false") if cuda_flag is True and str(
                options.get("engine.device", "auto") or "auto") == "auto" else ("engine.device", "--engine.device cpu")
            raise OptionsError(
                f"{key}: {want!r} asked but torch sees no GPU (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda or 'none'}); use {fix}"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionsError(f"engine.device: {want!r} asked but torch sees {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise OptionsError(f"engine.device: expected auto, cpu, cuda or cuda:N, got {want!r}")
    return device


def factory(options: Any = None, logger: Any = None) -> Engine:
    """Build the engine from ``engine.name`` (or ``engine.import``)."""
    if options is None:
        from bootstrap_repro.options import Options

        options = Options()
    if logger is None:
        from bootstrap_repro.logger import Logger

        logger = Logger()
    eng = options["engine"]
    if eng.get("import"):
        engine = import_factory(eng["import"], "engine.import")()
    else:
        cls = resolve(ENGINES, eng.get("name", "default"), "engine.name")
        engine = cls(options, logger, init_process_group(dist_info(), resolve_device(options)))
    return engine
