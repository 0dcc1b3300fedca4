"""One trial per GPU: which GPUs a worker's trials see (``CUDA_VISIBLE_DEVICES``), found without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

__all__ = ["visible_gpus", "gpus_for"]


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The driver's GPUs: ``$CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi``'s indices, else none."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


def gpus_for(slot: int, gpus: Sequence[str], per_trial: int = 1) -> list[str]:
    """The ``per_trial`` GPUs of worker ``slot``: disjoint while ``jobs * per_trial <= len(gpus)``, else shared round-robin."""
    if not gpus:
        return []
    k = max(1, min(per_trial, len(gpus)))
    start = (slot * k) % len(gpus)
    return [gpus[(start + i) % len(gpus)] for i in range(k)]
