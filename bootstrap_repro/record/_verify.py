"""``rerun --verify``: compare two ``logs.json`` value by value, and two records' environments."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap_repro.record._env import PACKAGES_FILE

__all__ = ["Divergence", "Comparison", "compare_logs", "environment_differences"]

_MISSING = object()


@dataclass(frozen=True)
class Divergence:
    """The first value that differs."""

    key: str
    index: int | None  #: position in the key's list (None: a scalar key)
    epoch: int | None  #: the epoch it belongs to, when known
    original: Any
    rerun: Any

    def describe(self) -> str:
        where = f"{self.key}[{self.index}]" if self.index is not None else self.key
        epoch = f" (epoch {self.epoch})" if self.epoch is not None else ""
        return f"{where}{epoch}: {_show(self.original)} (original) vs {_show(self.rerun)} (rerun)"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    return repr(value)


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_logs`."""

    identical: int  #: number of values equal in both
    keys: int  #: number of keys compared
    divergence: Divergence | None


def _same(a: Any, b: Any) -> bool:
    """Equal value and type (``1`` and ``1.0`` differ: the code logged something else); NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _epoch_of(logs: Mapping[str, Any], key: str, index: int) -> int | None:
    """The epoch of value ``index`` of ``key``: from ``<mode>_epoch.epoch``; batch keys split evenly."""
    group, _, _ = key.partition(".")
    mode, _, scope = group.rpartition("_")
    epochs = logs.get(f"{mode}_epoch.epoch")
    if not isinstance(epochs, list) or not epochs:
        return None
    if scope == "epoch":
        return epochs[index] if index < len(epochs) else None
    values = logs.get(key)
    if scope == "batch" and isinstance(values, list) and len(values) % len(epochs) == 0:
        per_epoch = len(values) // len(epochs)
        return epochs[index // per_epoch] if per_epoch and index // per_epoch < len(epochs) else None
    return None


def compare_logs(original: Mapping[str, Any], rerun: Mapping[str, Any], ignore: Sequence[str] = ()) -> Comparison:
    """Compare every value; the divergence reported is the earliest by epoch (ties: batch values first, key order)."""
    keys = [k for k in original if not any(fnmatch.fnmatchcase(k, pat) for pat in ignore)]
    keys += [k for k in rerun if k not in original and not any(fnmatch.fnmatchcase(k, pat) for pat in ignore)]
    identical, found = 0, []
    for order, key in enumerate(keys):
        a, b = original.get(key, _MISSING), rerun.get(key, _MISSING)
        if a is _MISSING and isinstance(b, list) or b is _MISSING and isinstance(a, list):
            a, b = ([] if a is _MISSING else a), ([] if b is _MISSING else b)  # a missing key: missing values
        if isinstance(a, list) and isinstance(b, list):
            first = None
            for i in range(max(len(a), len(b))):
                va = a[i] if i < len(a) else _MISSING
                vb = b[i] if i < len(b) else _MISSING
                if va is not _MISSING and vb is not _MISSING and _same(va, vb):
                    identical += 1
                elif first is None:
                    first = Divergence(key, i, _epoch_of(original if va is not _MISSING else rerun, key, i), va, vb)
            if first is not None:
                found.append((first, order))
        elif a is not _MISSING and b is not _MISSING and _same(a, b):
            identical += 1
        else:
            found.append((Divergence(key, None, None, a, b), order))
    if not found:
        return Comparison(identical, len(keys), None)

    def rank(item: tuple[Divergence, int]) -> tuple[float, int, int, int]:
        d, order = item
        epoch = d.epoch if d.epoch is not None else math.inf
        return (epoch, 0 if "_batch." in d.key else 1, d.index if d.index is not None else 0, order)

    return Comparison(identical, len(keys), min(found, key=rank)[0])


def _get(d: Mapping[str, Any], path: str) -> Any:
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


_ENV_FIELDS = (
    "python.version", "python.implementation", "platform", "machine", "host",
    "torch.version", "torch.cuda", "torch.cudnn", "gpus", "cuda_devices", "framework.version",
    "framework.sha256",
)


def _packages(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, sep, version = line.partition("==")
        if sep:
            out[name] = version
    return out


def environment_differences(original: Mapping[str, Any], rerun: Mapping[str, Any],
                            original_dir: Path | None = None, rerun_dir: Path | None = None) -> list[str]:
    """``["python.version: 3.11.7 -> 3.12.1", "packages: numpy 1.26.4 -> 2.0.0", ...]`` between two records."""
    ea, eb = original.get("environment", {}), rerun.get("environment", {})
    out = []
    for f in _ENV_FIELDS:
        va, vb = _get(ea, f), _get(eb, f)
        if va != vb:
            if f == "framework.sha256":
                out.append("bootstrap-repro source differs")
            else:
                out.append(f"{f}: {va} -> {vb}")
    vars_a, vars_b = ea.get("env_vars") or {}, eb.get("env_vars") or {}
    for k in sorted(set(vars_a) | set(vars_b)):
        if vars_a.get(k) != vars_b.get(k):
            out.append(f"${k}: {vars_a.get(k)} -> {vars_b.get(k)}")
    if original.get("runtime") != rerun.get("runtime"):
        out.append(f"runtime: {original.get('runtime')} -> {rerun.get('runtime')}")
    if original_dir is not None and rerun_dir is not None and \
            _get(ea, "packages.sha256") != _get(eb, "packages.sha256"):
        pa = _packages(original_dir / "repro" / PACKAGES_FILE)
        pb = _packages(rerun_dir / "repro" / PACKAGES_FILE)
        changed = [f"{n} {pa.get(n, '(none)')} -> {pb.get(n, '(none)')}" for n in sorted(set(pa) | set(pb))
                   if pa.get(n) != pb.get(n)]
        if changed:
            out.append("packages: " + ", ".join(changed))
    return out
