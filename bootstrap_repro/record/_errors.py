"""Errors of the record package: one-line messages naming the file or key and the fix."""

from __future__ import annotations

from bootstrap_repro.errors import ReproError

__all__ = [
    "RecordError",
    "RecordNotFoundError",
    "SnapshotError",
    "UntrackedTooLargeError",
    "CommitNotFoundError",
    "PatchError",
    "CacheEntryNotFoundError",
    "RunLockedError",
]


class RecordError(ReproError, ValueError):
    """An experiment record that is unreadable, damaged or written by a newer version."""


class RecordNotFoundError(RecordError, FileNotFoundError):
    """A directory without ``repro/record.json`` (or a record file it names)."""


class SnapshotError(ReproError, RuntimeError):
    """git failed while the code was being recorded."""


class UntrackedTooLargeError(ReproError, ValueError):
    """The untracked files of the code repo weigh more than ``exp.max_untracked_mb``."""


class CommitNotFoundError(ReproError, LookupError):
    """The recorded commit (or repository) is not available to re-run from."""


class PatchError(ReproError, ValueError):
    """The recorded ``code.diff`` does not apply to the recorded commit."""


class CacheEntryNotFoundError(ReproError, LookupError):
    """``cache rm KEY`` names no entry (or several)."""


class RunLockedError(ReproError, BlockingIOError):
    """Another process is running this experiment dir."""
