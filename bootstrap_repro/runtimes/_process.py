"""Process plumbing shared by the launchers: ending a child together with the process that started it."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``).

    Returns False when the parent is no longer ``parent_pid`` (it died before the signal was
    armed: the caller stops by itself), True otherwise, and on other systems (nothing armed).
    """
    if not sys.platform.startswith("linux") or parent_pid <= 0:
        return True
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    return os.getppid() == parent_pid
