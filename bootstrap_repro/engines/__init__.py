"""The Engine and its factory (``engines.factory()``), checkpoints and hook names."""

from bootstrap_repro.engines._checkpoint import Checkpointer, checkpoint_names
from bootstrap_repro.engines._engine import (
    Engine,
    EngineState,
    SavingCriterion,
    StopRun,
    parse_saving_criteria,
    to_device,
)
from bootstrap_repro.engines._factory import factory, resolve_device
from bootstrap_repro.engines._sync import SyncError, SyncGuard, allowed_sync
from bootstrap_repro.engines._hooks import HOOKS, MODE_EVENTS, hook_names

__all__ = [
    "Engine",
    "EngineState",
    "SavingCriterion",
    "StopRun",
    "SyncError",
    "SyncGuard",
    "allowed_sync",
    "Checkpointer",
    "HOOKS",
    "MODE_EVENTS",
    "hook_names",
    "checkpoint_names",
    "factory",
    "parse_saving_criteria",
    "resolve_device",
    "to_device",
]
