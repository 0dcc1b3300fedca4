"""Sweeps: Optuna studies whose trials are experiment runs (``bootstrap-repro sweep sweeps/lr.yaml``).

>>> spec = sweep.load_sweep("sweeps/lr.yaml", ["--engine.nb_epochs", "5"], jobs=2)
>>> result = sweep.Sweep(spec).run()        # trials in <sweep.dir>/trials/<number>/
>>> sweep.rebuild_report("logs/sweeps/lr")   # <sweep.dir>/view.html

Each trial is ``bootstrap-repro run`` in its own process; the trial process reports the
objective after every epoch to the study and stops when the pruner says so
(:mod:`bootstrap_repro.sweep._pruning`).  The study lives in a journal file in the sweep dir or
in PostgreSQL (several drivers on several machines); re-running the same command resumes it.
This package does not import torch.
"""

from bootstrap_repro.sweep._algorithms import PRUNERS, SAMPLERS, AlgoSpec, make_pruner, make_sampler
from bootstrap_repro.sweep._driver import MAX_ATTEMPTS, SPACE_ATTR, Sweep, SweepResult, space_diff
from bootstrap_repro.sweep._errors import ObjectiveNotLoggedError, SearchSpaceChangedError, StorageError, SweepError
from bootstrap_repro.sweep._gpus import gpus_for, visible_gpus
from bootstrap_repro.sweep._report import MARKER, REPORT_NAME, build_report, is_sweep_dir, read_marker, rebuild_report
from bootstrap_repro.sweep._spec import DEFAULT_MAX_RETRIES, ParamSpec, SweepSpec, load_sweep, parse_sweep
from bootstrap_repro.sweep._storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    JOURNAL_NAME,
    FileStudyStorage,
    PostgresStudyStorage,
    StudyStorage,
    storage_for,
)
from bootstrap_repro.sweep._trial import (
    CRASH_SIGNALS,
    TRIAL_ENV,
    TRIAL_FILE,
    TrialContext,
    best_value,
    counts_toward_n_trials,
    ended_by_signal,
    is_lost,
    objective_series,
    read_trial_file,
)

__all__ = [
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "ParamSpec",
    "AlgoSpec",
    "load_sweep",
    "parse_sweep",
    "SAMPLERS",
    "PRUNERS",
    "make_sampler",
    "make_pruner",
    "StudyStorage",
    "FileStudyStorage",
    "PostgresStudyStorage",
    "storage_for",
    "JOURNAL_NAME",
    "HEARTBEAT_INTERVAL_S",
    "GRACE_PERIOD_S",
    "TrialContext",
    "TRIAL_ENV",
    "TRIAL_FILE",
    "read_trial_file",
    "objective_series",
    "best_value",
    "is_lost",
    "counts_toward_n_trials",
    "ended_by_signal",
    "CRASH_SIGNALS",
    "build_report",
    "rebuild_report",
    "is_sweep_dir",
    "read_marker",
    "MARKER",
    "REPORT_NAME",
    "space_diff",
    "MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRIES",
    "SPACE_ATTR",
    "visible_gpus",
    "gpus_for",
    "SweepError",
    "StorageError",
    "SearchSpaceChangedError",
    "ObjectiveNotLoggedError",
]
