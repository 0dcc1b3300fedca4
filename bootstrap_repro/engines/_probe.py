"""A forward pass before the run that leaves no trace: what the model outputs, read on copies.

The pre-run checks (e.g. that each saving criterion is a logged value) call the model on a
2-item batch.  That call must not change what the run computes, so it runs on a deep copy
of the model whose *parameters are shared* (read-only under ``no_grad``: no memory for
them) while buffers (BatchNorm statistics) and Python attributes (a metric's counters) are
copies; the engine, its datasets, options and optimizer are shared, not copied; values logged
during the pass (``Logger()``, ``engine.logger`` or a logger a part holds) go to a scratch
logger; the RNG states are restored.  A model that cannot be
copied is not probed.

The same pass checks that the model fits the data, so that a mismatch is one error line before
the experiment dir exists, not a traceback in its ``logs.txt``: an error of the platform's own
(a :class:`~bootstrap_repro.errors.ReproError`, e.g. the built-in MLP's ``model.network.input_dim``
against the data's features) is raised, and so is a network that scores fewer classes than the
dataset has (``model.network.nb_classes``) under a class-index criterion (nll, cross-entropy):
checked on the network's output, before the criterion indexes it (on CUDA an out-of-range label
would be a device-side assert).  Any other failure is left to the run, which reports it with its
context.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import default_collate

from bootstrap_repro.engines._checkpoint import rng_state, set_rng_state
from bootstrap_repro.engines._engine import loggable, to_device
from bootstrap_repro.errors import OptionsError, ReproError

__all__ = ["probe_outputs", "shadow_copy", "check_fit"]


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
    (the run then shows the error with its context).  A model that does not fit the data raises
    a one-line :class:`~bootstrap_repro.errors.ReproError` (see the module's doc).
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
        batch = to_device(collate([ds[i] for i in range(min(nb_items, len(ds)))]), engine.device)
        model.train(split == "train")
        with torch.no_grad(), scratch.activate(), _classes_checked(model, batch, ds, engine):
            out = model(batch)
        return set(loggable(out))
    except ReproError:  # bad input the model's code reports (model.network.input_dim...), or _classes_checked's
        raise
    except Exception:  # noqa: BLE001 - not copyable, or a model bug that surfaces in the real run with its logs
        return None
    finally:
        engine.logger = logger
        set_rng_state(state)


def check_fit(engine: Any) -> None:
    """Raise a one-line :class:`~bootstrap_repro.errors.ReproError` when the model does not fit the data.

    One forward pass on 2 items, as :func:`probe_outputs` (which checks the same: call one of them).
    """
    probe_outputs(engine)


#: Criterions whose target holds class indices into the network's scores (dim 1).
_INDEX_LOSSES = ("NLLLoss", "CrossEntropyLoss")


def _class_target(model: Any) -> tuple[str, int] | None:
    """``(batch key, ignore_index)`` of the model's class-index criterion, or None."""
    criterions = getattr(model, "criterions", None)
    for crit in criterions.values() if isinstance(criterions, Mapping) else ():
        loss = getattr(crit, "loss", crit)  # a wrapped torch.nn loss (model.criterion.name: CrossEntropyLoss)
        if type(crit).__name__ in _INDEX_LOSSES or (loss is not crit and type(loss).__name__ in _INDEX_LOSSES):
            key = getattr(crit, "target_key", None) or "class_id"
            return key, int(getattr(loss, "ignore_index", -100))
    return None


@contextlib.contextmanager
def _classes_checked(model: Any, batch: Any, dataset: Any, engine: Any) -> Iterator[None]:
    """Check the network's class scores against the dataset's classes as soon as the network returns them."""
    network, target = getattr(model, "network", None), _class_target(model)
    if not isinstance(network, torch.nn.Module) or target is None or not isinstance(batch, Mapping):
        yield
        return
    key, ignore = target

    def check(module: Any, args: Any, scores: Any) -> None:
        labels = batch.get(key)
        if not isinstance(scores, torch.Tensor) or scores.dim() < 2 or not scores.is_floating_point() \
                or not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
            return
        classes, known = scores.shape[1], getattr(dataset, "nb_classes", None)
        labels = labels[labels != ignore]
        top = int(labels.max()) if labels.numel() else -1
        if isinstance(known, int) and not isinstance(known, bool) and known > classes:
            have = f"the dataset has {known} classes"
            need = known
        elif top >= classes:
            have, need = f"batch[{key!r}] holds class {top} (classes count from 0)", top + 1
        else:
            return
        options = getattr(engine, "options", None)
        sub = options.get("model.network") if options is not None else None
        named = isinstance(sub, Mapping) and ("nb_classes" in sub or not sub.get("import"))
        fix = f"set model.network.nb_classes: {need}" if named else f"make it score {need} classes"
        raise OptionsError(f"model.network{'.nb_classes' if named else ''}: the network scores {classes} "
                           f"class{'es' if classes != 1 else ''} but {have}; {fix}")

    handle = network.register_forward_hook(check)
    try:
        yield
    finally:
        handle.remove()
