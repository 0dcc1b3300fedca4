"""Exceptions of bootstrap-repro.

Every error a user can cause subclasses :class:`ReproError` *and* the builtin
that matches it, so ``except ValueError`` keeps working.  The message is one
line that names the key or file, what was expected, what came, and the fix;
the CLI prints it as ``error: <message>`` and exits with :attr:`exit_code`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ReproError",
    "OptionsError",
    "OptionsReadOnlyError",
    "PluginError",
    "HookError",
    "ExperimentExistsError",
    "CheckpointError",
    "UnsafePathError",
    "did_you_mean",
]


class ReproError(Exception):
    """Base class of the errors caused by user input (exit code 2)."""

    exit_code = 2


class OptionsError(ReproError, ValueError):
    """A bad options file, key or value."""


class OptionsReadOnlyError(OptionsError, PermissionError):
    """A write to options that are read-only (a running experiment's, or locked ones).

    A :class:`PermissionError` too, as the seed raised for its locked options.
    """


class PluginError(ReproError, ImportError):
    """An ``import:`` module that is missing or has no ``factory``."""


class HookRegistrationError(PluginError):
    """A hook plugin's ``register(engine)`` raised: a new run's exp dir is then removed (nothing half-written)."""


class HookError(ReproError, ValueError):
    """An unknown hook name."""


class ExperimentExistsError(ReproError, FileExistsError):
    """``exp.dir`` exists and no resume was asked."""


class CheckpointError(ReproError, FileNotFoundError):
    """A checkpoint that is missing or does not match its siblings."""


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """Return ``"; did you mean X?"`` for the closest candidate, or ``""``."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{matches[0]}?" if matches else ""


class UnsafePathError(ReproError, ValueError):
    """A path read from an experiment dir, a journal, a manifest or an archive that would lead outside it,
    or a symlink where a file of the platform is expected."""
