"""Errors of the sweep driver: one line each, exit code 2 (bad input), as every :class:`ReproError`."""

from __future__ import annotations

from bootstrap_repro.errors import ReproError

__all__ = ["SweepError", "StorageError", "SearchSpaceChangedError", "ObjectiveNotLoggedError"]


class SweepError(ReproError, ValueError):
    """A bad sweep file, flag or parameter range."""


class StorageError(ReproError, ConnectionError):
    """The study storage cannot be reached or does not belong to this sweep."""


class SearchSpaceChangedError(SweepError):
    """Resuming a study whose search space (or objective) differs from the sweep file."""


class ObjectiveNotLoggedError(SweepError):
    """The objective key is not among the values a finished trial logged."""
