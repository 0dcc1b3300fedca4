"""What the driver and a trial process share: the trial context (an environment variable),
the trial's ``sweep_trial.json`` and the objective read back from ``logs.json``.

``<trial dir>/sweep_trial.json`` records the trial's study and number from the moment its
run starts; the trial process adds ``state: PRUNED`` (or ``OBJECTIVE_MISSING``) when it stops
early, and the driver adds the outcome (state, value, duration, exit code) when it ends.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro._metric_names import resolve
from bootstrap_repro.fileio import atomic_write_json

__all__ = [
    "TRIAL_ENV", "TRIAL_FILE", "HOOK_MODULE", "TrialContext", "read_trial_file", "update_trial_file",
    "objective_series", "best_value", "is_lost", "counts_toward_n_trials", "attempt_of", "ended_by_signal",
    "lost_reason", "CRASH_SIGNALS", "MAX_ATTEMPTS",
]

#: JSON :class:`TrialContext` given to a trial process.
TRIAL_ENV = "BOOTSTRAP_REPRO_TRIAL"
#: The trial's record in its experiment dir.
TRIAL_FILE = "sweep_trial.json"
#: A lost or killed trial runs at most this many times by default (``sweep.max_retries`` + 1).
MAX_ATTEMPTS = 3
#: The hook module a trial's run loads through ``$BOOTSTRAP_REPRO_HOOKS``.
HOOK_MODULE = "bootstrap_repro.sweep._pruning"


@dataclass
class TrialContext:
    """Everything a trial process needs to report to its study."""

    storage: dict[str, str]  #: :meth:`StudyStorage.trial_info`
    storage_desc: str  #: the storage without secrets
    study: str
    number: int
    trial_id: int
    objective: str
    direction: str
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    driver_pid: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialContext | None:
        raw = (os.environ if environ is None else environ).get(TRIAL_ENV)
        if not raw:
            return None
        return cls(**json.loads(raw))


def read_trial_file(trial_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``<trial_dir>/sweep_trial.json`` ({} when missing or unreadable)."""
    try:
        data = json.loads((Path(trial_dir) / TRIAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_trial_file(trial_dir: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``sweep_trial.json`` (written atomically); returns the new content."""
    data = {**read_trial_file(trial_dir), **fields}
    atomic_write_json(Path(trial_dir) / TRIAL_FILE, data, indent=1)
    return data


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def objective_series(logs: Mapping[str, Any], objective: str) -> list[tuple[int, float | None]] | None:
    """``[(epoch, value), ...]`` of ``objective`` in a ``logs.json``; None when it was never logged.

    Non-finite values (logged as null) are kept as None.
    """
    values = logs.get(resolve(objective, logs) or objective)  # eval_epoch.accuracy_top1 finds acctop1
    if not isinstance(values, list):
        return None
    split = objective.split(".", 1)[0]
    epochs = logs.get(f"{split}.epoch")
    if not isinstance(epochs, list) or len(epochs) != len(values):
        epochs = list(range(len(values)))
    return [(int(e), float(v) if _finite(v) else None) for e, v in zip(epochs, values)]


def best_value(series: list[tuple[int, float | None]], direction: str) -> tuple[int, float] | None:
    """The best ``(epoch, value)`` for ``direction`` (the value told to the study), None if none is finite."""
    ok = [(e, v) for e, v in series if v is not None]
    if not ok:
        return None
    pick = max if direction == "maximize" else min
    return pick(ok, key=lambda ev: ev[1])


#: Signals a process raises against itself when its own code (or a library under it) crashes: such a trial
#: failed on its own, as one that raised, and is not retried.  Any other signal (SIGKILL from the OOM killer
#: or a ``kill -9``, SIGTERM from a scheduler's preemption, ...) came from outside: the trial is retried.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
                           signal.SIGSYS, signal.SIGTRAP})
#: torchrun's summary of a rank that died by a signal (its own exit code is then 1).
_TORCHRUN_SIGNAL = re.compile(r"Signal (\d+) \((SIG[A-Z0-9]+)\) received by PID")


def ended_by_signal(returncode: int | None, stderr_tail: Iterable[str] = ()) -> signal.Signals | None:
    """The signal that ended a trial process, or None when it exited on its own.

    ``returncode`` is the subprocess's: ``-N`` for signal N, or ``128 + N`` as a shell or Docker reports it
    (137 is a SIGKILLed container, the OOM killer's mark).  Under torchrun, whose exit code is 1, the
    summary it prints for the rank that died (``Signal 9 (SIGKILL) received by PID ...``) tells.  The run
    itself exits 0, 1, 2 or 130 (interrupted), never above 128 otherwise; a rank of torchrun that raised
    is its root cause, not a signal (the other ranks it then stops are not).
    """
    if returncode is None or returncode == 0:
        return None
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + 65 else None
    if number is None and returncode == 1:  # torchrun: its root cause, the first rank that failed
        lines = list(stderr_tail)
        roots = [i for i, line in enumerate(lines) if line.startswith("Root Cause")]
        for line in lines[roots[-1]:] if roots else ():
            m = _TORCHRUN_SIGNAL.search(line)
            if m:
                number = int(m.group(1))
                break
    try:
        return None if number is None else signal.Signals(number)
    except ValueError:  # a realtime signal: no name, an ordinary failure
        return None


def is_lost(trial: Any) -> bool:
    """Whether a FAIL trial did not end on its own (driver died, interrupted, killed by a signal, stale
    heartbeat): it is retried.

    The driver records ``returncode`` for every trial process that ended; a trial failed by
    anyone else has none, and the driver marks interrupted and killed ones ``lost``.
    """
    return trial.state.name == "FAIL" and (bool(trial.user_attrs.get("lost")) or "returncode" not in trial.user_attrs)


def attempt_of(trial: Any) -> int:
    """1 for a first run, 2 for its first retry, ..."""
    return int(trial.user_attrs.get("attempt", 1))


def counts_toward_n_trials(trial: Any, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Whether ``trial`` uses one of the ``n_trials``: COMPLETE, PRUNED, RUNNING, or FAIL on its own (a lost or
    killed trial counts only on its last attempt, ``max_attempts``).  A WAITING trial (a retry, an enqueued
    point) counts once it runs."""
    if trial.state.name in ("COMPLETE", "PRUNED", "RUNNING"):
        return True
    return trial.state.name == "FAIL" and (not is_lost(trial) or attempt_of(trial) >= max_attempts)


def lost_reason(trial: Any) -> str:
    """Why a lost trial is retried, for messages: ``killed by SIGKILL``, ``interrupted``, ``lost (its driver died)``."""
    ua = trial.user_attrs
    if ua.get("killed_by_signal"):
        return f"killed by {ua['killed_by_signal']}"
    if ua.get("lost") == "interrupted":
        return "interrupted"
    return f"lost ({ua.get('lost') or 'no heartbeat'})"
