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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro.fileio import atomic_write_json

__all__ = [
    "TRIAL_ENV", "TRIAL_FILE", "HOOK_MODULE", "TrialContext", "read_trial_file", "update_trial_file",
    "objective_series", "best_value", "is_lost",
]

#: JSON :class:`TrialContext` given to a trial process.
TRIAL_ENV = "BOOTSTRAP_REPRO_TRIAL"
#: The trial's record in its experiment dir.
TRIAL_FILE = "sweep_trial.json"
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
    values = logs.get(objective)
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


def is_lost(trial: Any) -> bool:
    """Whether a FAIL trial did not end on its own (driver died, interrupted, stale heartbeat): it is retried.

    The driver records ``returncode`` for every trial process that ended; a trial failed by
    anyone else has none, and the driver marks interrupted ones ``lost``.
    """
    return trial.state.name == "FAIL" and (bool(trial.user_attrs.get("lost")) or "returncode" not in trial.user_attrs)
