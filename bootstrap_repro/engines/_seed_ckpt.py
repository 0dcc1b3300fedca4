"""bootstrap.pytorch 0.0.13 checkpoints, read as bootstrap-repro's.

The seed wrote the same three files (``ckpt_<name>_{engine,model,optimizer}.pth.tar``) with other
contents:

- model: ``{'network': net_state, 'criterions': {mode: state}, 'metrics': {mode: state}}``
  (:meth:`bootstrap.models.model.Model.state_dict`); bootstrap-repro's model state is flat
  (``network.<key>``, ``criterion_<mode>.<key>``, ``metric_<mode>.<key>``);
- optimizer: the torch optimizer's own state dict (``{'state', 'param_groups'}``), or
  ``{'optimizer', 'scheduler'}`` with an LR scheduler; bootstrap-repro's
  :class:`~bootstrap_repro.optimizers.Optimizer` always writes the latter;
- engine: ``{'epoch', 'best_out'}``, the epoch the checkpoint ended (read by
  :class:`~bootstrap_repro.engines.Checkpointer`, which starts at the next one), with no logger
  lengths: :func:`seed_logs_lengths` derives them from ``logs.json``'s ``<mode>_<scope>.epoch`` lists.

Nothing here reads files or imports a model: the functions map plain state dicts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["is_seed_model_state", "model_state_from_seed", "optimizer_state_for", "seed_logs_lengths"]

#: The top-level keys of the seed's model state dict.
SEED_MODEL_KEYS = frozenset({"network", "criterions", "metrics"})
#: Seed key -> prefix of the flat key of bootstrap-repro's model (``criterions[mode]`` -> ``criterion_<mode>.``).
_PARTS = {"criterions": "criterion", "metrics": "metric"}


def is_seed_model_state(state: Any) -> bool:
    """Whether ``state`` is the seed's nested model state dict (a ``network`` mapping, no flat keys)."""
    return (isinstance(state, Mapping) and isinstance(state.get("network"), Mapping)
            and set(state) <= SEED_MODEL_KEYS)


def model_state_from_seed(state: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """The flat state dict of bootstrap-repro's model holding the seed's nested ``state``."""
    flat: OrderedDict[str, Any] = OrderedDict()
    for key, value in state["network"].items():
        flat[f"network.{key}"] = value
    for part, prefix in _PARTS.items():
        for mode, sub in (state.get(part) or {}).items():
            for key, value in (sub or {}).items():
                flat[f"{prefix}_{mode}.{key}"] = value
    meta = getattr(state["network"], "_metadata", None)
    if meta is not None:  # module versions, read by load_state_dict
        flat._metadata = OrderedDict(  # type: ignore[attr-defined]
            (f"network.{k}" if k else "network", v) for k, v in meta.items())
    return flat


def optimizer_state_for(target: Mapping[str, Any], state: Any) -> Any:
    """``state`` in the layout of ``target`` (the state dict of the optimizer it will be loaded into).

    A plain torch optimizer state (the seed's, without a scheduler) loaded into bootstrap-repro's
    wrapper (``{'optimizer', 'scheduler'}``) is wrapped; a wrapper's state loaded into a plain
    torch optimizer (an ``optimizer.import`` factory returning one) is unwrapped.  Anything else
    is returned as is.
    """
    if not isinstance(state, Mapping):
        return state
    wants_wrapper = "optimizer" in target and "param_groups" not in target
    if wants_wrapper and "param_groups" in state and "optimizer" not in state:
        return {"optimizer": state, "scheduler": None}
    if "param_groups" in target and "optimizer" in state and "param_groups" not in state:
        return state["optimizer"]
    return state


def seed_logs_lengths(values: Mapping[str, Any], epoch: int) -> dict[str, int]:
    """How many values of each key of ``logs.json`` a seed checkpoint of ``epoch`` had seen.

    The seed flushed ``logs.json`` at the end of each train and eval epoch, and saved its
    checkpoint after both: values of a later epoch (a run killed after its train epoch) are
    dropped.  A key is cut where its group's ``<group>.epoch`` list (``train_epoch.epoch``,
    ``eval_batch.epoch``...) first passes ``epoch``, when both lists have the same length; any
    other key is kept whole.
    """
    lengths: dict[str, int] = {}
    for key, series in values.items():
        if not isinstance(series, list):
            continue
        epochs = values.get(key.split(".", 1)[0] + ".epoch")
        n = len(series)
        if isinstance(epochs, list) and len(epochs) == n:
            n = next((i for i, e in enumerate(epochs)
                      if isinstance(e, (int, float)) and not isinstance(e, bool) and e > epoch), n)
        lengths[key] = n
    return lengths
