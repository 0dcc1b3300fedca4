"""A forward pass before the run that leaves no trace: what the model outputs, read on copies.

The pre-run checks (e.g. that each saving criterion is a logged value) call the model on a
2-item batch.  That call must not change what the run computes, so it runs on a deep copy
of the model whose *parameters are shared* (read-only under ``no_grad``: no memory for
them) while buffers (BatchNorm statistics) and Python attributes (a metric's counters) are
copies; the engine, its datasets, options and optimizer are shared, not copied; values logged
during the pass (``Logger()``, ``engine.logger`` or a logger a part holds) go to a scratch
logger; the RNG states are restored.  A model that cannot be
copied is not probed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import default_collate

from bootstrap_repro.engines._checkpoint import rng_state, set_rng_state
from bootstrap_repro.engines._engine import loggable, to_device

__all__ = ["probe_outputs", "shadow_copy"]


def shadow_copy(model: torch.nn.Module, shared: list[Any] = (), replace: Mapping[int, Any] | None = None) -> Any:
    """A deep copy of ``model`` sharing its parameters and the ``shared`` objects.

    ``replace`` maps ``id(obj)`` to what the copy holds instead of ``obj``.
    """
    memo: dict[int, Any] = {id(p): p for p in model.parameters()}
    memo.update({id(obj): obj for obj in shared if obj is not None})
    memo.update(replace or {})
    return copy.deepcopy(model, memo)


def _shared(engine: Any) -> list[Any]:
    """What the model's parts may hold of the run and must not be copied: the engine and its collaborators."""
    out = [engine, getattr(engine, "options", None), getattr(engine, "optimizer", None),
           getattr(engine, "view", None), getattr(engine, "checkpointer", None)]
    datasets = getattr(engine, "dataset", None)
    if isinstance(datasets, Mapping):
        out += [datasets, *datasets.values()]
    return out


def probe_outputs(engine: Any, nb_items: int = 2) -> set[str] | None:
    """The scalar keys the model outputs on ``nb_items`` items of the eval (else train) split.

    ``None`` when the split cannot be indexed, the model cannot be copied, or the pass fails
    (the run then shows the error with its context).
    """
    from bootstrap_repro.logger import Logger

    split = "eval" if "eval" in engine.dataset else "train"
    ds = engine.dataset.get(split)
    if ds is None or not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__") or len(ds) == 0:
        return None
    state = rng_state()
    scratch = Logger(activate=False, echo=False)
    logger = engine.logger
    try:
        model = shadow_copy(engine.model, _shared(engine), {id(logger): scratch})
        engine.logger = scratch  # a part that logs through the engine writes to the scratch logger
        collate = getattr(ds, "collate_fn", None) or default_collate
        batch = collate([ds[i] for i in range(min(nb_items, len(ds)))])
        model.train(split == "train")
        with torch.no_grad(), scratch.activate():
            out = model(to_device(batch, engine.device))
        return set(loggable(out))
    except Exception:  # noqa: BLE001 - not copyable, or a model bug that surfaces in the real run with its logs
        return None
    finally:
        engine.logger = logger
        set_rng_state(state)
