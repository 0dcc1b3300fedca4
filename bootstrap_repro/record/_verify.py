"""``rerun --verify``: compare two runs' outputs (every ``logs*.json`` value, every checkpoint tensor) and environments."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap_repro.logger import read_logs
from bootstrap_repro.record._env import PACKAGES_FILE
from bootstrap_repro.record._errors import RecordError

__all__ = ["Divergence", "Comparison", "compare_logs", "OutputComparison", "compare_outputs",
           "environment_differences"]

_MISSING = object()
#: Logs keys never compared: wall-clock times (``engine.log_batches``' ``train_batch.timer.process``...).
TIMING_KEYS: tuple[str, ...] = ("*_batch.timer.*",)


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
    """Compare every value but :data:`TIMING_KEYS`; the divergence reported is the earliest by epoch
    (ties: batch values first, key order)."""
    ignore = (*ignore, *TIMING_KEYS)
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


@dataclass(frozen=True)
class OutputComparison:
    """The result of :func:`compare_outputs`."""

    values: int  #: logs values identical
    log_files: int  #: ``logs*.json`` files compared
    tensors: int  #: checkpoint tensors identical
    checkpoints: int  #: ``ckpt_*.pth.tar`` files compared
    divergence: str | None  #: the first difference, one line (``None``: identical)

    def summary(self) -> str:
        """``5430 values identical (2 logs files), 40 tensors identical (9 checkpoint files)``."""
        return (f"{_count(self.values, 'value')} identical ({_count(self.log_files, 'logs file')}), "
                f"{_count(self.tensors, 'tensor')} identical ({_count(self.checkpoints, 'checkpoint file')})")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _side(in_original: bool) -> str:
    return "missing in the rerun" if in_original else "missing in the original"


def _names(a: Path, b: Path, pattern: str) -> list[str]:
    return sorted({p.name for d in (a, b) for p in d.glob(pattern) if p.is_file()})


def compare_outputs(original_dir: Path, rerun_dir: Path, ignore: Sequence[str] = ()) -> OutputComparison:
    """Compare every ``logs*.json`` value (``ignore``: globs of logs keys) and every checkpoint tensor, bit for bit.

    The divergence reported is the first of: the logs files in name order (each by :func:`compare_logs`),
    then the checkpoints, ``ckpt_last_*`` first then the others in name order, tensors in state-dict order.
    The logs of checkpoint evaluations (``logs_eval_<split>.json``, ``logs_eval.json`` of older dirs) are
    compared when the rerun has them too: a rerun replays the training, not the evaluations made after it.
    """
    original_dir, rerun_dir = Path(original_dir), Path(rerun_dir)
    values = 0
    first: str | None = None  # the divergence reported
    logs = [n for n in _names(original_dir, rerun_dir, "logs*.json")
            if not n.startswith("logs_eval") or (rerun_dir / n).is_file()]
    for name in logs:
        a, b = original_dir / name, rerun_dir / name
        if not (a.is_file() and b.is_file()):
            first = first or f"{name}: {_side(a.is_file())}"
            continue
        cmp = compare_logs(read_logs_checked(a), read_logs_checked(b), ignore)
        values += cmp.identical
        if cmp.divergence is not None:
            first = first or f"{name}: {cmp.divergence.describe()}"
    ckpts = sorted(_names(original_dir, rerun_dir, "ckpt_*.pth.tar"), key=lambda n: (not n.startswith("ckpt_last_"), n))
    tensors = 0
    done: dict[tuple[tuple[int, int], tuple[int, int]], tuple[int, str | None]] = {}  # a hard-linked pair: once
    for name in ckpts:
        a, b = original_dir / name, rerun_dir / name
        if not (a.is_file() and b.is_file()):
            first = first or f"{name}: {_side(a.is_file())}"
            continue
        sa, sb = a.stat(), b.stat()
        pair = ((sa.st_dev, sa.st_ino), (sb.st_dev, sb.st_ino))
        if pair not in done:
            walk = _Walk()
            walk.compare(*(_engine_canonical(_read_checkpoint(p)) for p in (a, b)), "")
            done[pair] = (walk.tensors, walk.first)
        same, detail = done[pair]
        tensors += same
        if detail is not None:
            first = first or f"{name}: {detail}"
    return OutputComparison(values, len(logs), tensors, len(ckpts), first)


def read_logs_checked(path: Path) -> dict[str, Any]:
    """A ``logs*.json`` to compare; one that is not UTF-8 JSON holding an object is a one-line RecordError."""
    try:
        return read_logs(path)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:120]
        if "integer string conversion" in reason:
            reason = "a number of more than 4300 digits"
        raise RecordError(f"{path}: cannot be compared ({reason}); the experiment dir is damaged") from None


def _engine_canonical(obj: Any) -> Any:
    """An engine file's object as compared: the file-format number left out and the RNG words in one form
    (format 1 kept them as lists of ints, format 2 as bytes), so that a rerun by a newer version of
    bootstrap-repro differs only where the run does."""
    if not isinstance(obj, Mapping) or "rng" not in obj or "resume_epoch" not in obj:
        return obj
    from bootstrap_repro.engines._checkpoint import canonical_rng

    return {**{k: v for k, v in obj.items() if k != "format"}, "rng": canonical_rng(obj["rng"])}


def _read_checkpoint(path: Path) -> Any:
    from bootstrap_repro.engines._checkpoint import _load

    try:
        return _load(path, "cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling error: a damaged file
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0]  # torch's messages run for lines
        raise RecordError(f"{path}: cannot be read ({type(exc).__name__}: {first}); the experiment dir is damaged") \
            from None


class _Walk:
    """Compare two nested checkpoint objects; count the equal tensors, keep the first difference."""

    def __init__(self) -> None:
        self.tensors = 0
        self.first: str | None = None

    def differ(self, text: str) -> None:
        self.first = self.first or text

    def compare(self, a: Any, b: Any, path: str) -> None:
        import torch

        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            detail = _tensor_difference(a, b)
            if detail is None:
                self.tensors += 1
            else:
                self.differ(f"tensor {path!r} differs ({detail})")
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in [*a, *(k for k in b if k not in a)]:
                sub = f"{path}.{k}" if path else str(k)
                if k in a and k in b:
                    self.compare(a[k], b[k], sub)
                else:
                    self.differ(f"{sub!r} {_side(k in a)}")
        elif isinstance(a, (list, tuple)) and type(a) is type(b):
            for i in range(max(len(a), len(b))):
                if i < len(a) and i < len(b):
                    self.compare(a[i], b[i], f"{path}[{i}]")
                else:
                    self.differ(f"{f'{path}[{i}]'!r} {_side(i < len(a))}")
        elif not _same_leaf(a, b):
            self.differ(f"{path!r}: {_brief(a)} (original) vs {_brief(b)} (rerun)")


def _same_leaf(a: Any, b: Any) -> bool:
    try:
        return bool(_same(a, b))
    except (TypeError, ValueError, RuntimeError):  # e.g. an array's ambiguous truth value
        return False


def _brief(value: Any, width: int = 60) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor (shape {list(value.shape)}, {_dtype(value)})"
    text = _show(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _tensor_difference(a: Any, b: Any) -> str | None:
    """``None`` when bitwise equal (dtype, shape, bytes), else what differs."""
    import torch

    if a.dtype != b.dtype:
        return f"dtype {_dtype(a)} (original) vs {_dtype(b)} (rerun)"
    if a.shape != b.shape:
        return f"shape {list(a.shape)} (original) vs {list(b.shape)} (rerun)"
    a, b = (t.detach().cpu().resolve_conj().resolve_neg() for t in (a, b))
    if a.layout != torch.strided:
        a, b = a.to_dense(), b.to_dense()
    try:
        equal = torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))
    except RuntimeError:  # a dtype without a byte view (quantized): compare values
        equal = torch.equal(a, b)
    if equal:
        return None
    return f"shape {list(a.shape)}, {_dtype(a)}; {_delta(a, b)}"


def _delta(a: Any, b: Any) -> str:
    import torch

    try:
        wide = torch.complex128 if a.is_complex() else torch.float64
        x, y = a.to(wide), b.to(wide)
    except (RuntimeError, TypeError):
        return "bytes differ"
    differs = ~((x == y) | (x.isnan() & y.isnan()))
    if not bool(differs.any()):
        return "equal values, different bits (-0.0 or NaN payloads)"
    return f"max abs diff {(x - y).abs()[differs].max().item():.2g}"


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
