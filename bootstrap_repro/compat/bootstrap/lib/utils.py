"""``bootstrap.lib.utils``: the seed's helpers (torch is imported only by the functions that need it)."""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["merge_dictionaries", "update_values", "set_random_seed", "available_gpu_ids", "env_info"]


def merge_dictionaries(dict1: MutableMapping[Any, Any], dict2: MutableMapping[Any, Any]) -> None:
    """Deep-merge ``dict2`` into ``dict1`` in place (dicts merge key by key, other values replace)."""
    for key in dict2:
        if key in dict1 and isinstance(dict1[key], dict) and isinstance(dict2[key], dict):
            merge_dictionaries(dict1[key], dict2[key])
        else:
            dict1[key] = dict2[key]


def update_values(dict_from: MutableMapping[Any, Any], dict_to: MutableMapping[Any, Any]) -> MutableMapping[Any, Any]:
    """Copy the non-None values of ``dict_from`` into ``dict_to`` (recursively); returns ``dict_to``."""
    for key, value in dict_from.items():
        if isinstance(value, dict):
            update_values(value, dict_to[key])
        elif value is not None:
            dict_to[key] = value
    return dict_to


def set_random_seed(seed: int) -> None:
    """Seed python, numpy (when installed) and torch."""
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:  # numpy is optional
        return
    numpy.random.seed(seed % 2**32)


def available_gpu_ids() -> list[int]:
    """The GPU ids of ``CUDA_VISIBLE_DEVICES``, else those torch sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(idx) for idx in visible.split(",") if idx.strip().lstrip("-").isdigit()]
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def env_info() -> dict[str, Any]:
    """Python, platform and torch versions (bootstrap-repro's run record holds the full environment)."""
    import torch

    return {
        "python_version": sys.version,
        "platform": platform.platform(),
        "pytorch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
    }
