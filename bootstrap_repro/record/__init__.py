"""The experiment record, exact re-runs and the result cache.

Every experiment dir gets ``repro/``::

    record.json        schema_version, status (RUNNING -> COMPLETED | FAILED | INTERRUPTED | STOPPED),
                       command, times, code (repo, commit, branch, remote, dirty, plugin modules),
                       environment (Python, platform, torch/CUDA/cuDNN, GPUs, host, allowlisted
                       variables), runtime, seed, cache key, cache_hit_of, resumes
    code.diff          git diff HEAD --binary (tracked changes, staged or not)
    untracked.tar.gz   untracked, non-ignored files (at most exp.max_untracked_mb)
    packages.txt       installed distributions, pip-freeze format

>>> snap = take_snapshot(options, exp_dir=path)          # code + environment + cache key, no torch
>>> rec = RunRecord.begin(path, snap); ...; rec.end("COMPLETED")
>>> rerun("logs/mnist", verify=True).exit_code          # `bootstrap-repro rerun logs/mnist --verify`
>>> ResultCache().lookup(snap.key)                      # `bootstrap-repro cache ls | rm KEY | gc`

This package imports neither torch nor git at import time.
"""

from bootstrap_repro.record._cache import (
    CACHE_DIR_ENV,
    NO_CACHE_ENV,
    CacheEntry,
    EntryInfo,
    GcReport,
    ResultCache,
    cache_root,
)
from bootstrap_repro.record._env import (
    CONTAINER_ENV,
    ENV_ALLOWLIST,
    PACKAGES_FILE,
    current_runtime,
    environment,
    environment_fingerprint,
    installed_packages,
    packages_text,
)
from bootstrap_repro.record._errors import (
    CacheEntryNotFoundError,
    CommitNotFoundError,
    PatchError,
    RecordError,
    RecordNotFoundError,
    RunLockedError,
    SnapshotError,
    UntrackedTooLargeError,
)
from bootstrap_repro.record._git import sanitize_url
from bootstrap_repro.record._inputs import (
    INPUTS_ARCHIVE,
    INPUTS_FILE,
    NOT_INPUT_ENV,
    InputChange,
    InputRecorder,
    Inputs,
    StatCache,
    check_inputs,
)
from bootstrap_repro.record._key import NON_RESULT_KEYS, cache_key, result_options
from bootstrap_repro.record._lock import LOCK_NAME, exp_dir_in_use, exp_dir_lock
from bootstrap_repro.record._record import (
    RECORD_FILE,
    REPRO_DIR,
    SCHEMA_VERSION,
    STATUSES,
    STOP_AFTER_EPOCH_ENV,
    RunRecord,
    Snapshot,
    inputs_problem,
    merged_inputs,
    read_inputs,
    read_record,
    record_path,
    take_snapshot,
)
from bootstrap_repro.record._snapshot import (
    CODE_ROOT_ENV,
    DIFF_FILE,
    UNTRACKED_FILE,
    CodeSnapshot,
    PluginModule,
    locate_module,
    snapshot_code,
)

#: Names of the re-run and the comparison of outputs, imported when first used: a run that trains needs neither.
_LAZY = {
    **dict.fromkeys(("InputsChangedError", "RerunResult", "Segment", "default_rerun_dir", "input_differences",
                     "materialise_code", "rerun", "segments_of"), "_rerun"),
    **dict.fromkeys(("Comparison", "Divergence", "OutputComparison", "compare_logs", "compare_outputs",
                     "environment_differences"), "_verify"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

__all__ = [
    # record
    "SCHEMA_VERSION", "REPRO_DIR", "RECORD_FILE", "STATUSES", "DIFF_FILE", "UNTRACKED_FILE", "PACKAGES_FILE",
    "Snapshot", "take_snapshot", "RunRecord", "read_record", "record_path",
    "CodeSnapshot", "PluginModule", "snapshot_code", "locate_module", "CODE_ROOT_ENV",
    "ENV_ALLOWLIST", "environment", "environment_fingerprint", "installed_packages", "packages_text",
    "CONTAINER_ENV", "current_runtime",
    # cache
    "NON_RESULT_KEYS", "result_options", "cache_key",
    "ResultCache", "CacheEntry", "EntryInfo", "GcReport", "cache_root", "CACHE_DIR_ENV", "NO_CACHE_ENV",
    # re-run
    # inputs
    "Inputs", "InputRecorder", "InputChange", "StatCache", "check_inputs", "INPUTS_FILE", "INPUTS_ARCHIVE",
    "NOT_INPUT_ENV", "read_inputs", "merged_inputs", "inputs_problem", "sanitize_url",
    "rerun", "RerunResult", "InputsChangedError", "Segment", "segments_of", "input_differences",
    "STOP_AFTER_EPOCH_ENV", "default_rerun_dir", "materialise_code",
    "compare_logs", "Comparison", "Divergence", "compare_outputs", "OutputComparison", "environment_differences",
    # locks and errors
    "LOCK_NAME", "exp_dir_lock", "exp_dir_in_use", "RunLockedError",
    "RecordError", "RecordNotFoundError", "SnapshotError", "UntrackedTooLargeError", "CommitNotFoundError",
    "PatchError", "CacheEntryNotFoundError",
]
