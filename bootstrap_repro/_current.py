"""The *current* Options and Logger, as the seed's ``Options()`` / ``Logger()`` give them.

There is no hidden singleton: a run activates its objects with
``with obj.activate(): ...`` (a stack, restored on exit), and calling the
class with no arguments returns the innermost active one.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from bootstrap_repro.errors import ReproError

__all__ = ["CurrentAccessor", "Activatable", "NoCurrentError"]


class NoCurrentError(ReproError, RuntimeError):
    """``Options()`` or ``Logger()`` was called while no experiment is active."""


class CurrentAccessor(abc.ABCMeta):
    """Metaclass: ``Cls()`` with no arguments returns the current instance."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            return cls.current()  # type: ignore[attr-defined]
        return super().__call__(*args, **kwargs)


class Activatable(metaclass=CurrentAccessor):
    """Mixin giving a class a stack of active instances."""

    _active: ClassVar[list[Any]]
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._active = []

    @classmethod
    def current(cls) -> Any:
        """The innermost active instance; raises :class:`NoCurrentError` if none."""
        if not cls._active:
            raise NoCurrentError(
                f"{cls.__name__}() was called but no experiment is active; "
                f"run through `bootstrap-repro run` or use `with {cls.__name__.lower()}.activate():`"
            )
        return cls._active[-1]

    @classmethod
    def has_current(cls) -> bool:
        """Whether an instance is active."""
        return bool(cls._active)

    @contextlib.contextmanager
    def activate(self) -> Iterator[Any]:
        """Make ``self`` the current instance inside the ``with`` block."""
        with self._lock:
            type(self)._active.append(self)
        try:
            yield self
        finally:
            with self._lock:
                stack = type(self)._active
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i] is self:
                        del stack[i]
                        break
