"""The cache key: a hash of the options that change results, the code and the environment."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bootstrap_repro.options import flatten

__all__ = ["NON_RESULT_KEYS", "result_options", "cache_key", "KEY_VERSION"]

#: Bump when the key's recipe changes (old entries then simply miss).
KEY_VERSION = 3
#: Options that do not change a run's results; a key ending with ``.*`` covers its whole subtree.
NON_RESULT_KEYS: tuple[str, ...] = (
    "exp.dir",
    "exp.resume",
    "exp.max_untracked_mb",
    "exp.max_input_gb",
    "exp.max_inputs_archive_mb",
    "exp.secret_globs",
    "exp.env_keys",  # their values are in the key (see take_snapshot), the list itself is not
    "exp.env_ignore",
    "exp.inputs_ignore",  # what is read there is checked (or not) as an input, not keyed
    "engine.print_freq",
    "engine.progress_bar",
    "runtime.node_rank",
    "runtime.rdzv_endpoint",
    "runtime.rdzv_id",
    "runtime.docker.mounts",  # where host paths appear, not what they hold (dataset.dir, code: in the key)
    "runtime.docker.network",
    "runtime.docker.shm_size",
    # where and how long a Slurm job runs, not what it computes (runtime.slurm.nodes is: the world size)
    *(f"runtime.slurm.{k}" for k in ("partition", "time", "gpus_per_node", "cpus_per_task", "mem_gb", "account",
                                     "qos", "constraint", "setup", "additional", "folder", "inner",
                                     "signal_delay_s", "max_requeues")),
    "view.*",
    "views.*",
)


def _is_non_result(key: str) -> bool:
    for k in NON_RESULT_KEYS:
        if k.endswith(".*"):
            if key == k[:-2] or key.startswith(k[:-1]):
                return True
        elif key == k:
            return True
    return False


def result_options(options: Any) -> dict[str, Any]:
    """The flattened options minus :data:`NON_RESULT_KEYS`."""
    tree = options.as_dict() if hasattr(options, "as_dict") else dict(options)
    return {k: v for k, v in flatten(tree).items() if not _is_non_result(k)}


def cache_key(options: Any, code_fingerprint: str, env_fingerprint: str, env_keys: dict[str, Any] | None = None) -> str:
    """sha256 (hex) of the result options, the code and environment fingerprints, and the ``exp.env_keys`` values."""
    payload = {"version": KEY_VERSION, "options": result_options(options),
               "code": code_fingerprint, "environment": env_fingerprint, "env_keys": env_keys or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
