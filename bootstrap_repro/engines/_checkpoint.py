"""Checkpoint files: ``ckpt_<name>_{engine,model,optimizer}.pth.tar``.

The model and optimizer files hold plain ``state_dict``s, as in the seed; the
engine file holds the epoch to start from, the best values, every RNG state and
how many values the logger held, so that a resumed run continues bit-exactly
(on CPU).  The three files of one save are replaced as one unit
(:func:`bootstrap_repro.fileio.commit_group`).
"""

from __future__ import annotations

import copy
import random
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from bootstrap_repro.engines._distributed import unwrap
from bootstrap_repro.errors import CheckpointError
from bootstrap_repro.fileio import commit_group, recover_groups

__all__ = ["Checkpointer", "rng_state", "set_rng_state", "checkpoint_names"]

FORMAT = 1
PARTS = ("engine", "model", "optimizer")


def rng_state() -> dict[str, Any]:
    """Every RNG the run may draw from."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
    except ImportError:  # numpy is optional for torch
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when the GPUs match)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def checkpoint_names(exp_dir: str | Path) -> list[str]:
    """Names (``last``, ``best_acctop1``) of the complete checkpoints in ``exp_dir``."""
    exp_dir = Path(exp_dir)
    names = {p.name[len("ckpt_"):].split("_engine.pth.tar")[0] for p in exp_dir.glob("ckpt_*_engine.pth.tar*")}

    def present(n: str, part: str) -> bool:  # final, or staged by a commit in flight
        f = exp_dir / f"ckpt_{n}_{part}.pth.tar"
        return f.exists() or f.with_name(f.name + ".staged").exists()

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
    return copy.deepcopy(obj)


class Checkpointer:
    """Saves and loads the engine, model and optimizer of one experiment dir.

    :meth:`save` copies the states on the calling thread, then serialises and
    commits them on a background thread, so training goes on while the files
    are written and fsynced.  At most one save is in flight; :meth:`wait`
    blocks until it is on disk (and re-raises its error, if any).
    """

    def __init__(self, exp_dir: str | Path, *, background: bool = True) -> None:
        self.dir = Path(exp_dir)
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def path(self, name: str, part: str) -> Path:
        return self.dir / f"ckpt_{name}_{part}.pth.tar"

    def save(self, engine: Any, names: list[str]) -> None:
        """Write ``ckpt_<name>_*`` for every name, atomically as one unit.

        The first name's files are serialised; the others (``best_*`` saved at
        the same epoch as ``last``) are hard links to them.
        """
        self.wait()
        engine_state = {
            "format": FORMAT,
            "epoch": engine.state.epoch,
            "best": dict(engine.state.best),
            "nb_nan_skipped": engine.state.nb_nan_skipped,
            "rng": rng_state(),
            "logs_lengths": engine.logger.lengths(),
            "grad_scaler": snapshot(engine.precision.state_dict()),
        }
        objs = {"engine": engine_state, "model": snapshot(unwrap(engine.model).state_dict())}
        if engine.optimizer is not None:
            objs["optimizer"] = snapshot(engine.optimizer.state_dict())

        def writer(obj: Any) -> Any:
            return lambda f: torch.save(obj, f)

        first, *others = names
        writers = {self.path(first, part).name: writer(obj) for part, obj in objs.items()}
        links = {self.path(n, part).name: self.path(first, part).name for n in others for part in objs}
        if not self.background:
            commit_group(self.dir, "ckpt", writers, links)
            return

        def job() -> None:
            try:
                commit_group(self.dir, "ckpt", writers, links)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the training thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=job, name="bootstrap-repro-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the last save is committed; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def exists(self, name: str) -> bool:
        return self.path(name, "engine").exists() and self.path(name, "model").exists()

    def load(self, engine: Any, name: str, *, restore_rng: bool = True) -> dict[str, Any]:
        """Load ``ckpt_<name>_*`` into the engine's model, optimizer and state."""
        recover_groups(self.dir)
        if not self.exists(name):
            have = ", ".join(checkpoint_names(self.dir)) or "none"
            raise CheckpointError(
                f"exp.resume: no checkpoint '{name}' in {self.dir} (found: {have}); "
                f"use --exp.resume last or best_<metric>, or start a new --exp.dir"
            )
        device = engine.device
        try:
            state = _load(self.path(name, "engine"), "cpu")
            unwrap(engine.model).load_state_dict(_load(self.path(name, "model"), device))
            if engine.optimizer is not None and self.path(name, "optimizer").exists():
                engine.optimizer.load_state_dict(_load(self.path(name, "optimizer"), device))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"{self.path(name, 'model')}: does not match the model/optimizer built from the options "
                f"({str(exc).splitlines()[0]}); resume with the options.yaml saved in the experiment"
            ) from None
        engine.state.epoch = int(state["epoch"])
        engine.state.best = dict(state.get("best", {}))
        engine.state.nb_nan_skipped = int(state.get("nb_nan_skipped", 0))
        engine.state.resumed_from = name
        engine.precision.load_state_dict(state.get("grad_scaler"))
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])
        return state


def _load(path: Path, map_location: Any) -> Any:
    # weights_only: loading a checkpoint never runs pickled code.
    return torch.load(path, map_location=map_location, weights_only=True)
