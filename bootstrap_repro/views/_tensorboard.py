"""The tensorboard view: scalars of the logged values in ``<exp.dir>/tensorboard/``.

Optional: needs the ``tensorboard`` package (``pip install 'bootstrap-repro[tensorboard]'``),
imported lazily, with torch, only when the first scalars are written.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import PluginError
from bootstrap_repro.views._base import BaseView, Logs
from bootstrap_repro.views._items import DEFAULT_LOG, Item, Panel, panels_and_logs, parse_items, series

__all__ = ["TensorboardView", "MISSING_TENSORBOARD"]

MISSING_TENSORBOARD = (
    "view: tensorboard export needs the tensorboard package; pip install 'bootstrap-repro[tensorboard]'"
)


def _check_installed() -> None:
    try:
        found = importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError(MISSING_TENSORBOARD)


def _import_summary_writer() -> Any:
    """``torch.utils.tensorboard.SummaryWriter`` (imports torch and tensorboard)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PluginError(MISSING_TENSORBOARD) from None
    return SummaryWriter


class TensorboardView(BaseView):
    """Write the logged values as tensorboard scalars, incrementally, on each flush.

    Tags follow the seed: ``<metric>/<epoch|batch>/<split>`` (``loss/epoch/train_epoch``),
    with the epoch as step.  ``items`` as for the plotly view; None: every epoch metric.
    The first build of a process rewrites the event files from all the logged values
    (so a resumed run has no duplicates); later builds add only the new values.
    """

    name = "tensorboard"

    def __init__(self, exp_dir: str | os.PathLike[str], items: Sequence[str | Panel] | None = None) -> None:
        super().__init__(exp_dir)
        _check_installed()
        panels: list[Panel] = []
        for item in items or ():
            panels.extend([item] if isinstance(item, Panel) else parse_items(item, "view"))
        self.panels: list[Panel] | None = panels or None
        self._writer: Any = None
        self._written: dict[Item, int] = {}

    @property
    def log_dir(self) -> Path:
        return self.exp_dir / "tensorboard"

    def _open(self) -> Any:
        if self._writer is None:
            writer_cls = _import_summary_writer()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for old in self.log_dir.glob("events.out.tfevents*"):
                old.unlink(missing_ok=True)
            self._writer = writer_cls(log_dir=str(self.log_dir))
        return self._writer

    def build(self, logs: Logs | None = None) -> Path:
        """Write the values not yet written; returns the tensorboard dir."""
        panels, data = panels_and_logs(self.exp_dir, self.panels, logs)
        writer = self._open()
        for item in dict.fromkeys(i for p in panels for i in p.items):
            x, y = series(data, item)
            start = self._written.get(item, 0)
            if len(y) <= start:
                continue
            metric = item.key.partition(".")[2] or item.key
            kind = "epoch" if item.is_epoch else "batch"
            tag = f"{metric}/{kind}/{item.split or item.key}"
            if item.log != DEFAULT_LOG:
                tag = f"{item.log}/{tag}"
            for i in range(start, len(y)):
                value = y[i]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                step = x[i] if x is not None and isinstance(x[i], int) else i
                writer.add_scalar(tag, value, step)
            self._written[item] = len(y)
        writer.flush()
        return self.log_dir

    def close(self) -> None:
        """Close the event file (done at exit by tensorboard anyway)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
