"""The view extension point: :class:`BaseView` and :class:`MultiView`."""

from __future__ import annotations

import abc
import atexit
import functools
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

__all__ = ["BaseView", "MultiView", "FLUSH_HOOKS", "END_HOOKS", "engine_logs", "Prefix", "snapshot_logs"]

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


class Prefix(Sequence[Any]):
    """The first ``n`` values of an append-only list, without copying them.

    The logger's lists only grow between flushes (a truncation or a resume replaces them
    with new lists), so the values ``source[:n]`` seen at a flush stay what they were while
    the training thread appends: a background thread may read them.  A consumer that keeps
    state across flushes (the plotly view's decimation) checks ``source`` (same list?) and
    ``n`` (grown?) and reads only the new values.
    """

    __slots__ = ("source", "n")

    def __init__(self, source: list[Any], n: int | None = None) -> None:
        self.source = source
        self.n = len(source) if n is None else n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            return self.source[start:stop:step]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("Prefix index out of range")
        return self.source[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.source[: self.n])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Prefix):
            other = other.source[: other.n]
        return isinstance(other, list) and self.source[: self.n] == other

    __hash__ = None  # type: ignore[assignment]

    def tolist(self) -> list[Any]:
        """A copy of the values (O(n))."""
        return self.source[: self.n]

    def __repr__(self) -> str:
        return f"Prefix(<list of {len(self.source)}>, n={self.n})"


def snapshot_logs(logs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``logs`` with every list replaced by a :class:`Prefix` of its current length: O(keys), no values copied."""
    return {n: {k: Prefix(v, len(v)) if type(v) is list else v for k, v in vals.items()}
            for n, vals in (logs or {}).items()}


def _last_flush(engine: Any, mode: str) -> bool:
    """Whether a ``mode`` flush of ``engine`` now is its run's last (its last epoch; train's only without eval)."""
    state = getattr(engine, "state", None)
    epoch, nb_epochs = getattr(state, "epoch", None), getattr(engine, "nb_epochs", None)
    if not isinstance(epoch, int) or not isinstance(nb_epochs, int):
        return False
    last = epoch + 1 >= nb_epochs or getattr(state, "stop_reason", None) is not None
    if mode == "train":
        dataset = getattr(engine, "dataset", None)
        return last and not (isinstance(dataset, Mapping) and "eval" in dataset)
    return last


def _wait_all() -> None:
    """At exit: write the last requested page of every view (their workers are daemons)."""
    for view in list(_LIVE):
        view.wait()


_LIVE: weakref.WeakSet[BaseView] = weakref.WeakSet()
atexit.register(_wait_all)


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

    #: Rebuild on a background thread (the training thread only records each list's length).
    background: bool = True
    #: Seconds between two background rebuilds at least (also at least ``20x`` the last rebuild's
    #: time, so a view never takes more than ~5 % of the interpreter), and before the first one;
    #: :meth:`wait` and the run's last flush (:meth:`hurry`) skip the delay.
    min_interval: float = 1.0

    def on_flush(self, engine: Any) -> None:
        """Hook: rebuild from the engine logger's in-memory values.

        The training thread hands over each list with its current length (a :class:`Prefix`,
        O(number of keys), no values copied); the page is built on a background thread (one
        at a time, at most every :attr:`min_interval` seconds; a newer request replaces a
        waiting one), so training does not wait for it.  The first page is built
        :attr:`min_interval` after the first flush (a run shorter than that builds one page, at
        its end).  A failed write (disk full, permissions) warns and lets the training go on.
        """
        logs = snapshot_logs(engine_logs(engine))
        if not self.background:
            self._build_safely(logs)
            return
        with self._cond():
            self._pending = logs
            if not self._next:
                self._next = time.monotonic() + self.min_interval
            if self._worker is None:
                # A daemon that lingers between requests (no thread start per flush); the last
                # request is still written at exit (see _wait_all) and at the end of a run.
                self._worker = threading.Thread(target=self._drain, name=f"bootstrap-repro-{self.name}-view",
                                                daemon=True)
                _LIVE.add(self)
                self._worker.start()
            else:
                self._cond().notify_all()

    def _cond(self) -> threading.Condition:
        if "_condition" not in self.__dict__:
            self._condition = threading.Condition(threading.Lock())
        return self._condition

    _worker: threading.Thread | None = None
    _pending: Any = None
    _urgent: bool = False
    _hurry: bool = False
    _building: bool = False
    _next: float = 0.0
    #: Seconds an idle worker waits for the next request before it ends.
    linger: float = 30.0

    def _drain(self) -> None:
        cond = self._cond()
        while True:
            with cond:
                self._building = False
                cond.notify_all()
                while True:
                    if self._pending is None:
                        if not cond.wait(self.linger) and self._pending is None:
                            self._worker = None  # under the lock: a later request starts a new worker
                            return
                        continue
                    delay = self._next - time.monotonic()
                    if self._urgent or self._hurry or delay <= 0:
                        break
                    cond.wait(delay)
                logs, self._pending, self._building, self._hurry = self._pending, None, True, False
            t0 = time.monotonic()
            self._build_safely(logs)
            t1 = time.monotonic()
            self._next = t1 + max(self.min_interval, 20 * (t1 - t0))

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
        """Block until the last requested rebuild is written (also the end-of-run hook); no delay."""
        cond = self._cond()
        with cond:
            self._urgent = True
            cond.notify_all()
            try:
                while self._worker is not None and self._worker.is_alive() and (self._pending is not None
                                                                                or self._building):
                    cond.wait(0.5)
            finally:
                self._urgent = False

    def hurry(self) -> None:
        """Build the waiting request now, not :attr:`min_interval` after the last page (the run's last flush:
        its page is then built while the last checkpoint is written, not after it)."""
        cond = self._cond()
        with cond:
            if self._pending is not None:
                self._hurry = True
                cond.notify_all()

    def _flushed(self, mode: str, engine: Any) -> None:
        """The flush hook of ``mode`` (train, eval): :meth:`on_flush`, hurried when it is the run's last."""
        self.on_flush(engine)
        if _last_flush(engine, mode):
            self.hurry()

    def register(self, engine: Any) -> None:
        """Register :meth:`on_flush` on ``engine`` for each of :data:`FLUSH_HOOKS`; wait at the end of a run."""
        for hook in FLUSH_HOOKS:
            engine.register_hook(hook, functools.partial(self._flushed, hook.split("_", 1)[0]))
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

    def hurry(self) -> None:
        for view in self.views:
            view.hurry()

    def __repr__(self) -> str:
        return f"MultiView({self.views!r})"
