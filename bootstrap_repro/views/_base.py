"""The view extension point: :class:`BaseView` and :class:`MultiView`."""

from __future__ import annotations

import abc
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BaseView", "MultiView", "FLUSH_HOOKS", "END_HOOKS", "engine_logs"]

#: Engine hooks after which the views are rebuilt (the logger has just flushed).
FLUSH_HOOKS = ("train_on_flush", "eval_on_flush")
#: Engine hooks at which the last rebuild must be on disk.
END_HOOKS = ("train_on_end", "eval_on_end")

Logs = Mapping[str, Mapping[str, Sequence[Any]]]


def engine_logs(engine: Any) -> dict[str, Mapping[str, Sequence[Any]]] | None:
    """``{logger.name: logger.values}`` of ``engine`` (None when it has no logger)."""
    logger = getattr(engine, "logger", None)
    values = getattr(logger, "values", None)
    if logger is None or not isinstance(values, Mapping):
        return None
    return {str(getattr(logger, "name", None) or "logs"): values}


class BaseView(abc.ABC):
    """A view of an experiment's logs, rebuilt after each logger flush.

    Subclasses implement :meth:`build`.  :meth:`register` attaches
    :meth:`on_flush` to the engine's :data:`FLUSH_HOOKS`.
    """

    name: str = "view"

    def __init__(self, exp_dir: str | Path) -> None:
        self.exp_dir = Path(exp_dir)

    @abc.abstractmethod
    def build(self, logs: Logs | None = None) -> Any:
        """Rebuild the view from ``logs`` (``{log name: {key: values}}``); logs not given are read from disk."""

    def generate(self) -> Any:
        """The seed's name for :meth:`build` from the files on disk."""
        return self.build()

    #: Rebuild on a background thread (the training thread only copies the value lists).
    background: bool = True

    def on_flush(self, engine: Any) -> None:
        """Hook: rebuild from the engine logger's in-memory values.

        The lists are copied here and the page is built on a background thread
        (one at a time; a newer request replaces a waiting one), so training
        does not wait for it.  A failed write (disk full, permissions) warns and
        lets the training go on.
        """
        logs = engine_logs(engine)
        logs = {n: {k: list(v) if isinstance(v, list) else v for k, v in vals.items()} for n, vals in (logs or {}).items()}
        if not self.background:
            self._build_safely(logs)
            return
        with self._guard():
            self._pending = logs
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, name=f"bootstrap-repro-{self.name}-view")
                self._worker.start()

    def _guard(self) -> threading.Lock:
        if "_lock" not in self.__dict__:
            self._lock = threading.Lock()
        return self._lock

    _worker: threading.Thread | None = None
    _pending: Any = None

    def _drain(self) -> None:
        while True:
            with self._guard():
                logs, self._pending = self._pending, None
                if logs is None:
                    return
            self._build_safely(logs)

    def _build_safely(self, logs: Logs | None) -> None:
        try:
            self.build(logs)
        except OSError as exc:
            warnings.warn(
                f"view: could not rebuild the {self.name} view in {self.exp_dir} ({exc}); "
                f"training goes on; rebuild later with `bootstrap-repro view {self.exp_dir}`",
                RuntimeWarning,
                stacklevel=2,
            )

    def wait(self, engine: Any = None) -> None:
        """Block until the last requested rebuild is written (also the end-of-run hook)."""
        worker = self._worker
        if worker is not None:
            worker.join()

    def register(self, engine: Any) -> None:
        """Register :meth:`on_flush` on ``engine`` for each of :data:`FLUSH_HOOKS`; wait at the end of a run."""
        for hook in FLUSH_HOOKS:
            engine.register_hook(hook, self.on_flush)
        for hook in END_HOOKS:
            engine.register_hook(hook, self.wait)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.exp_dir)!r})"


class MultiView(BaseView):
    """Several views built together (``view: [{name: plotly, ...}, {name: tensorboard, ...}]``)."""

    name = "multi"

    def __init__(self, views: Sequence[BaseView]) -> None:
        if not views:
            raise ValueError("MultiView needs at least one view")
        super().__init__(views[0].exp_dir)
        self.views = list(views)

    def build(self, logs: Logs | None = None) -> list[Any]:
        """Build each view; returns their results in order."""
        return [view.build(logs) for view in self.views]

    def on_flush(self, engine: Any) -> None:
        for view in self.views:
            view.on_flush(engine)

    def wait(self, engine: Any = None) -> None:
        for view in self.views:
            view.wait()

    def __repr__(self) -> str:
        return f"MultiView({self.views!r})"
