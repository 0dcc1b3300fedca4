"""Checkpoint files: ``ckpt_<name>_{engine,model,optimizer}.pth.tar``.

The model and optimizer files hold plain ``state_dict``s, as in the seed; the
engine file holds ``engine.state_dict()`` (the seed's ``epoch`` and ``best_out``, and what
a subclass adds), the epoch to start from, every RNG state and how many values the logger
held, so that a resumed run continues bit-exactly (on CPU).  An engine file of the seed
(no ``format`` key) holds the epoch it ended: a resume starts at the next one; its nested model
state and plain optimizer state are mapped to ours (:mod:`bootstrap_repro.engines._seed_ckpt`).  The three files of one save are replaced as one unit
(:func:`bootstrap_repro.fileio.commit_group`).
"""

from __future__ import annotations

import array
import copy
import random
import re
import sys
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bootstrap_repro._lingering import LingeringWorker
from bootstrap_repro.engines._distributed import unwrap
from bootstrap_repro.engines._seed_ckpt import (is_seed_model_state, model_state_from_seed, optimizer_state_for,
                                               seed_logs_lengths)
from bootstrap_repro.errors import CheckpointError
from bootstrap_repro.fileio import commit_group, group_pending, recover_groups, settle_group

__all__ = ["Checkpointer", "rng_state", "set_rng_state", "checkpoint_names"]

#: The engine file's format: 2 keeps the generators' words as bytes (:func:`rng_state`); 1 as lists of ints.
#: A file of a newer format than this version reads is refused in one line.
FORMAT = 2
PARTS = ("engine", "model", "optimizer")


#: The array typecode of an unsigned 32-bit word on this platform.
_U32 = "I" if array.array("I").itemsize == 4 else "L"


def _u32_bytes(words: Any) -> bytes:
    """32-bit words (a Mersenne Twister state) as little-endian bytes: one object to pickle, not 625 ints."""
    arr = array.array(_U32, words)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def _u32_words(data: bytes) -> list[int]:
    """The words of :func:`_u32_bytes`."""
    arr = array.array(_U32)
    arr.frombytes(bytes(data))
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tolist()


def rng_state() -> dict[str, Any]:
    """Every RNG the run may draw from.

    The Mersenne Twister words of Python's and NumPy's generators are kept as bytes
    (:func:`_u32_bytes`): an engine file then pickles a few objects instead of ~1,250 ints, each a
    call into Python on the commit thread that holds the interpreter lock against the training loop.
    :func:`set_rng_state` also reads the older list form.
    """
    version, words, gauss = random.getstate()
    state: dict[str, Any] = {"python": (version, _u32_bytes(words), gauss), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, keys.astype("<u4", copy=False).tobytes(), pos, has_gauss, cached)
    except ImportError:  # numpy is optional for torch
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def canonical_rng(state: Any) -> Any:
    """``state`` (a :func:`rng_state`) with the generators' words as tuples of ints, whichever form was
    saved: two files compared (``rerun --verify``) differ only if their generators do."""
    if not isinstance(state, Mapping):
        return state
    out = dict(state)
    py = out.get("python")
    if isinstance(py, (tuple, list)) and len(py) == 3 and isinstance(py[1], (bytes, list, tuple)):
        out["python"] = (py[0], tuple(_u32_words(py[1]) if isinstance(py[1], bytes) else py[1]), py[2])
    npy = out.get("numpy")
    if isinstance(npy, (tuple, list)) and len(npy) == 5 and isinstance(npy[1], (bytes, list, tuple)):
        out["numpy"] = (npy[0], tuple(_u32_words(npy[1]) if isinstance(npy[1], bytes) else npy[1]), *npy[2:])
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when the GPUs match); words as bytes or as a list."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(_u32_words(words) if isinstance(words, bytes) else words), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        keys = np.frombuffer(keys, dtype="<u4").astype(np.uint32) if isinstance(keys, bytes) else np.asarray(
            keys, dtype=np.uint32)
        np.random.set_state((name, keys, pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def checkpoint_names(exp_dir: str | Path) -> list[str]:
    """Names (``last``, ``best_acctop1``) of the complete checkpoints in ``exp_dir``."""
    exp_dir = Path(exp_dir)
    names = {p.name[len("ckpt_"):].split("_engine.pth.tar")[0] for p in exp_dir.glob("ckpt_*_engine.pth.tar*")}

    def present(n: str, part: str) -> bool:  # final, or staged by a commit in flight
        f = exp_dir / f"ckpt_{n}_{part}.pth.tar"
        return f.exists() or f.with_name(f.name + ".staged").exists() or any(exp_dir.glob(f"{f.name}.*.staged"))

    return sorted(n for n in names if all(present(n, part) for part in PARTS))


def snapshot(obj: Any) -> Any:
    """A copy of a (nested) state dict whose tensors are detached CPU copies."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = OrderedDict((k, snapshot(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else {
            k: snapshot(v) for k, v in obj.items()}
        if hasattr(obj, "_metadata"):  # module versions, read by load_state_dict
            out._metadata = copy.deepcopy(obj._metadata)  # type: ignore[union-attr]
        return out
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    if obj is None or type(obj) in _IMMUTABLE:  # nothing to copy (most of an optimizer's param_groups)
        return obj
    return copy.deepcopy(obj)


_IMMUTABLE = frozenset({bool, int, float, complex, str, bytes})


class Checkpointer:
    """Saves and loads the engine, model and optimizer of one experiment dir.

    :meth:`save` copies the states on the calling thread, then serialises and
    commits them on a background thread, so training goes on while the files
    are written and fsynced.  At most one save is in flight; :meth:`wait`
    blocks until it is on disk (and re-raises its error, if any).  The last
    directory fsync of a commit is deferred to the next one (or to :meth:`wait`,
    which the end of training calls): a committed save rolls forward after a
    crash or a power loss (:func:`~bootstrap_repro.fileio.commit_group`).

    The background thread lingers between saves (:attr:`linger` seconds), so a save hands its
    commit over without starting a thread and waiting for it to be scheduled (milliseconds on a
    busy machine); a commit in flight when the interpreter exits is finished first (atexit).
    """

    #: Seconds the commit thread waits for the next save before it ends.
    linger: float = 30.0

    def __init__(self, exp_dir: str | Path, *, background: bool = True) -> None:
        self.dir = Path(exp_dir)
        self.background = background
        self._commits = LingeringWorker("bootstrap-repro-checkpoint", self.linger)  # at most one in flight
        self._unsettled = False  # a commit of ours whose deferred directory fsync is still to do
        #: ``(name, part) -> (stat of the file, object)`` read by :meth:`verify`, used once by :meth:`load`
        #: while the file is unchanged: a resume reads each checkpoint file once.
        self._verified: dict[tuple[str, str], tuple[tuple[int, ...], Any]] = {}

    def path(self, name: str, part: str) -> Path:
        return self.dir / f"ckpt_{name}_{part}.pth.tar"

    def save(self, engine: Any, names: list[str], *, model: Any = None, optimizer: Any = None,
             resume_epoch: int | None = None) -> None:
        """Write ``ckpt_<name>_*`` for every name, atomically as one unit.

        The first name's files are serialised; the others (``best_*`` saved at
        the same epoch as ``last``) are hard links to them.  ``model`` and
        ``optimizer`` default to the engine's; ``resume_epoch`` (the epoch a
        resume starts at) to ``engine.state.epoch``.
        """
        self.wait(durable=False)  # the next commit makes this one's renames durable
        model = engine.model if model is None else model
        optimizer = engine.optimizer if optimizer is None else optimizer
        engine_state = {
            **snapshot(engine.state_dict()),
            "format": FORMAT,
            "resume_epoch": engine.state.epoch if resume_epoch is None else int(resume_epoch),
            "best": dict(engine.state.best),
            "nb_nan_skipped": engine.state.nb_nan_skipped,
            "rng": rng_state(),
            "logs_lengths": engine.logger.lengths(),
            "grad_scaler": snapshot(engine.precision.state_dict()),
        }
        objs = {"engine": engine_state, "model": snapshot(unwrap(model).state_dict())}
        if optimizer is not None:
            objs["optimizer"] = snapshot(optimizer.state_dict())

        def writer(obj: Any) -> Any:
            return lambda f: torch.save(obj, f)

        first, *others = names
        writers = {self.path(first, part).name: writer(obj) for part, obj in objs.items()}
        links = {self.path(n, part).name: self.path(first, part).name for n in others for part in objs}
        # The logger's flushed values are fdatasync'd off the training thread: the ones this checkpoint counts
        # (logs_lengths) are on disk before it commits, so a power loss never leaves a checkpoint ahead of its logs.
        # It is waited for after the files are staged, before the commit point: the journal's sync overlaps the writes.
        logs_synced = getattr(engine.logger, "sync", None)
        self._unsettled = True
        if not self.background:
            commit_group(self.dir, "ckpt", writers, links, before_commit=logs_synced)
            return
        self._commits.submit(lambda: commit_group(self.dir, "ckpt", writers, links, before_commit=logs_synced))

    def wait(self, *, durable: bool = True) -> None:
        """Block until the last save is committed; re-raise its error.

        ``durable`` (default) also does the directory fsync deferred from the commit and removes
        its marker; without it the save is committed (it survives a crash or a power loss,
        rolled forward) but the experiment dir keeps ``ckpt.<token>.commit`` until then.
        """
        self._commits.wait()
        if durable and self._unsettled:  # only the process that saved settles (not another DDP rank)
            settle_group(self.dir, "ckpt")
            self._unsettled = False

    def exists(self, name: str) -> bool:
        return self.path(name, "engine").exists() and self.path(name, "model").exists()

    def load(self, engine: Any, name: str, *, model: Any = None, optimizer: Any = None, map_location: Any = None,
             restore_rng: bool = True) -> dict[str, Any]:
        """Load ``ckpt_<name>_*`` into the model and optimizer (the engine's by default), then ``engine.load_state_dict``.

        The engine receives the file's values with ``epoch`` set to the epoch to start from.
        Only the writing process (rank 0, or not distributed) recovers interrupted commits first:
        another rank cleaning the dir would delete rank 0's files in flight (its ``logs.json`` rewrite).
        """
        if getattr(getattr(engine, "dist", None), "is_rank0", True):
            recover_groups(self.dir)
        if not self.exists(name):
            have = ", ".join(checkpoint_names(self.dir)) or "none"
            raise CheckpointError(
                f"exp.resume: no checkpoint '{name}' in {self.dir} (found: {have}); "
                f"use --exp.resume last or best_<metric>, or start a new --exp.dir"
            )
        device = engine.device if map_location is None else map_location
        model = engine.model if model is None else model
        optimizer = engine.optimizer if optimizer is None else optimizer
        verified, self._verified = self._verified, {}
        state = self._engine_state(name, verified)
        target = unwrap(model)
        model_state = self._model_state(name, target, device, verified)
        optimizer_state = None
        if optimizer is not None and self.path(name, "optimizer").exists():
            optimizer_state = optimizer_state_for(optimizer.state_dict(),
                                                  self._read_once(name, "optimizer", device, verified))
        try:
            target.load_state_dict(model_state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise self._mismatch(name, "model", str(exc).splitlines()[0].rstrip(":")) from None
        if optimizer_state is not None:
            try:
                optimizer.load_state_dict(optimizer_state)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise self._mismatch(name, "optimizer", str(exc).splitlines()[0]) from None
        if "format" not in state and "logs_lengths" not in state:  # the seed's: cut logs.json by its epochs
            state["logs_lengths"] = seed_logs_lengths(getattr(engine.logger, "values", {}), int(state["epoch"]))
        if "resume_epoch" in state:
            start = int(state["resume_epoch"])
        else:  # older files of ours hold the epoch to start from; the seed's (no format) the epoch it ended
            start = int(state["epoch"]) + (0 if "format" in state else 1)
        engine.load_state_dict({**state, "epoch": start})
        engine.state.resumed_from = name
        engine.precision.load_state_dict(state.get("grad_scaler"))
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])
        return state


    # ------------------------------------------------------------------ reading, checked
    def read(self, name: str, part: str, map_location: Any = "cpu") -> Any:
        """The object in ``ckpt_<name>_<part>.pth.tar``; an unreadable file is one :class:`CheckpointError` line."""
        path = self.path(name, part)
        try:
            return _load(path, map_location)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: not found; resume another checkpoint "
                                  f"(found: {', '.join(checkpoint_names(self.dir)) or 'none'})") from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure: one line naming the file
            text = str(exc)
            refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            if refused:
                raise CheckpointError(
                    f"{path}: holds a Python object of class {refused.group(1)}, not only tensors and plain "
                    f"values; bootstrap-repro loads checkpoints with weights_only=True (no pickled code runs): "
                    f"re-save it with tensors and plain values"
                ) from None
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            first = lines[0] if lines else type(exc).__name__
            if "Weights only load failed" in first:  # torch's preamble: the reason is further down
                first = next((ln for ln in lines if ln.startswith("Unsupported")), "not a torch.save file")
            raise CheckpointError(f"{path}: cannot be read as a checkpoint ({first}); it is damaged or not a "
                                  f"torch.save file: resume another checkpoint, or restore this one") from None

    def _read_once(self, name: str, part: str, map_location: Any,
                   verified: dict[tuple[str, str], tuple[tuple[int, ...], Any]] | None) -> Any:
        """:meth:`read`, or the object :meth:`verify` read from the same, unchanged file.

        Verified objects are on the CPU; ``load_state_dict`` moves them where the model and the
        optimizer live, as ``map_location`` would have.
        """
        got = (verified or {}).get((name, part))
        if got is not None and _stat_key(self.path(name, part)) == got[0]:
            return got[1]
        return self.read(name, part, map_location)

    def _read_verifying(self, name: str, part: str) -> Any:
        """:meth:`read` (on the CPU) for :meth:`verify`, kept for :meth:`load` if the file stays as it is."""
        path = self.path(name, part)
        before = _stat_key(path)
        obj = self.read(name, part)
        if before is not None and _stat_key(path) == before:
            self._verified[(name, part)] = (before, obj)
        return obj

    def _engine_state(self, name: str,
                      verified: dict[tuple[str, str], tuple[tuple[int, ...], Any]] | None = None) -> dict[str, Any]:
        return self._engine_dict(name, self._read_once(name, "engine", "cpu", verified))

    def _engine_dict(self, name: str, state: Any) -> dict[str, Any]:
        """The engine file's object, checked: a dict with an int epoch."""
        epoch = state.get("resume_epoch", state.get("epoch")) if isinstance(state, Mapping) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise CheckpointError(
                f"{self.path(name, 'engine')}: not an engine checkpoint (expected a dict with an int 'epoch', "
                f"got {type(state).__name__}{' without one' if isinstance(state, Mapping) else ''}); "
                f"resume another checkpoint"
            )
        fmt = state.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise CheckpointError(
                f"{self.path(name, 'engine')}: written by a newer bootstrap-repro (engine file format {fmt}; this "
                f"version reads up to {FORMAT}); resume it with that version or a newer one (pip install -U bootstrap-repro)"
            )
        return dict(state)

    def _model_state(self, name: str, target: Any, map_location: Any,
                     verified: dict[tuple[str, str], tuple[tuple[int, ...], Any]] | None = None) -> Any:
        """The model file's state, the seed's nested layout mapped to the flat one when ``target`` is flat."""
        state = self._read_once(name, "model", map_location, verified)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{self.path(name, 'model')}: not a model checkpoint (expected a state dict, "
                                  f"got {type(state).__name__}); resume another checkpoint")
        if is_seed_model_state(state) and not is_seed_model_state(target.state_dict()):
            return model_state_from_seed(state)
        return state

    def _mismatch(self, name: str, part: str, detail: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path(name, part)}: does not fit the {part} built from the options ({detail}); "
            f"resume with the options (model, optimizer) and the network code it was saved with"
        )

    def verify(self, engine: Any, name: str, *, train: bool) -> None:
        """Check, reading only, that ``ckpt_<name>_*`` loads into the engine's model (and optimizer when ``train``).

        Called before anything is written for a run that resumes, so that a checkpoint that cannot
        be used (unreadable, another network, another optimizer) is one error line and the dir is
        left as it was.  A commit in flight (recovered later, under the run's lock) is not checked.
        What was read is kept for :meth:`load` of this checkpointer, which reads again only the
        files that changed meanwhile.
        """
        self._verified = {}
        if group_pending(self.dir, "ckpt") or not self.exists(name):
            return
        self._engine_dict(name, self._read_verifying(name, "engine"))
        target = unwrap(engine.model)
        want = target.state_dict()
        model_state = self._read_verifying(name, "model")
        if not is_seed_model_state(want):  # a model of its own layout: its load_state_dict decides
            if not isinstance(model_state, Mapping):
                raise CheckpointError(f"{self.path(name, 'model')}: not a model checkpoint (expected a state dict, "
                                      f"got {type(model_state).__name__}); resume another checkpoint")
            if is_seed_model_state(model_state):
                model_state = model_state_from_seed(model_state)
            problem = _state_mismatch(want, model_state)
            if problem:
                raise self._mismatch(name, "model", problem)
        optimizer = engine.optimizer
        if train and optimizer is not None and self.path(name, "optimizer").exists():
            want_opt = optimizer.state_dict()
            problem = _groups_mismatch(want_opt, optimizer_state_for(want_opt, self._read_verifying(name, "optimizer")))
            if problem:
                raise self._mismatch(name, "optimizer", problem)


def _state_mismatch(want: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """What differs between two flat state dicts (missing, unexpected keys, shapes); None when they fit.

    Unexpected criterion and metric keys are not counted: a model without a mode's criterion
    (an eval-only run) skips them.
    """
    def shape(v: Any) -> Any:
        return tuple(v.shape) if hasattr(v, "shape") else None

    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want and not k.startswith(("criterion_", "metric_"))]
    shapes = [f"{k} {list(shape(got[k]))} in the file, {list(shape(want[k]))} in the model"
              for k in want if k in got and shape(want[k]) is not None and shape(got[k]) is not None
              and shape(want[k]) != shape(got[k])]

    def few(kind: str, items: list[str]) -> str:
        more = f" and {len(items) - 2} more" if len(items) > 2 else ""
        return f"{kind} {', '.join(items[:2])}{more}"

    parts = [few(kind, items) for kind, items in (("missing", missing), ("unexpected", unexpected)) if items]
    if shapes:
        parts.append(f"shape of {shapes[0]}" + (f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""))
    return "; ".join(parts) or None


def _groups_mismatch(want: Mapping[str, Any], got: Any) -> str | None:
    """Whether an optimizer state has the parameter groups of ``want`` (as torch's load_state_dict checks)."""
    def groups(state: Any) -> Any:
        inner = state.get("optimizer", state) if isinstance(state, Mapping) else None
        return inner.get("param_groups") if isinstance(inner, Mapping) else None

    mine, theirs = groups(want), groups(got)
    if mine is None:
        return None
    if not isinstance(theirs, list):
        return f"no parameter groups in the file (got {type(got).__name__})"
    if len(mine) != len(theirs):
        return f"{len(theirs)} parameter groups in the file, {len(mine)} in the optimizer"
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if not isinstance(b, Mapping) or len(a.get("params", ())) != len(b.get("params", ())):
            n = len(b.get("params", ())) if isinstance(b, Mapping) else "?"
            return f"parameter group {i} has {n} parameters in the file, {len(a.get('params', ()))} in the optimizer"
    return None


#: Checkpointers whose commit thread is alive: a commit in flight is finished before the interpreter exits.
def _stat_key(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or written: device, inode, size, mtime, ctime (None: no file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _numpy_scalars() -> list[Any]:
    """numpy's scalar and dtype classes: data, safe to unpickle (a seed checkpoint's ``best_out`` may hold them)."""
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        return []
    core = getattr(np, "_core", None) or np.core
    return [np.dtype, core.multiarray.scalar, *{type(np.dtype(c)) for c in "?bhilqBHILQefdgFDG"}]


def _load(path: Path, map_location: Any) -> Any:
    # weights_only: loading a checkpoint never runs pickled code (numpy scalars are data).
    with torch.serialization.safe_globals(_numpy_scalars()):
        return torch.load(path, map_location=map_location, weights_only=True)
