"""``bootstrap.engines.engine``: the seed's ``Engine()``, built from the current options.

It is bootstrap-repro's :class:`~bootstrap_repro.engines.Engine` (hooks, loops, checkpoints, resume)
with the seed's constructor: ``Engine()`` takes the current run's options and logger (outside a run,
the seed-API singletons of ``bootstrap.lib``) and the device of ``engine.device`` / ``misc.cuda``.
A subclass made with ``super().__init__()`` is what an ``engine.import`` factory returns.
"""

from __future__ import annotations

from typing import Any

from bootstrap_repro import logger as _native_logger
from bootstrap_repro.engines import Engine as _NativeEngine
from bootstrap_repro.engines import resolve_device
from bootstrap_repro.engines._distributed import dist_info, init_process_group
from bootstrap_repro.options import Options as _NativeOptions

from ..lib.logger import Logger
from ..lib.options import Options

__all__ = ["Engine"]


class Engine(_NativeEngine):
    """bootstrap-repro's engine; ``Engine()`` with no argument uses the current options and logger."""

    def __init__(self, options: Any = None, logger: Any = None, device: Any = None) -> None:
        if options is None:  # the run's (bootstrap-repro's) options, else the seed-API singleton
            options = _NativeOptions.current() if _NativeOptions.has_current() else Options.current()
        if logger is None:
            native = _native_logger.Logger
            logger = native.current() if native.has_current() else Logger()._native
        if device is None:
            device = init_process_group(dist_info(), resolve_device(options))
        super().__init__(options, logger, device)
