"""``Model``: a network plus a criterion and a metric per mode (``train``, ``eval``, or a split's name).

The seed's constructors work too: ``DefaultModel(engine)`` and ``SimpleModel(engine)`` build
their parts from the factories (the network once, a criterion and a metric per mode), and a
subclass may override ``_init_network``/``_init_criterions``/``_init_metrics`` as in the seed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from bootstrap_repro.errors import OptionsError

__all__ = ["Model", "DefaultModel", "SimpleModel", "model_modes"]

MODES = ("train", "eval")
_PARTS = ("criterion", "metric")


def model_modes(engine: Any) -> list[str]:
    """The modes to build criterions and metrics for: the keys of ``engine.dataset``, else train and eval."""
    datasets = getattr(engine, "dataset", None)
    if isinstance(datasets, Mapping) and datasets:
        return [str(mode) for mode in datasets]
    return list(MODES)


def _check_modes(components: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if components is not None and not isinstance(components, Mapping):
        raise TypeError(f"{what}: expected a dict {{mode: {what[:-1]}}}, got {type(components).__name__}")
    out = {mode: comp for mode, comp in (components or {}).items() if comp is not None}
    for mode in out:
        if not isinstance(mode, str) or not mode or "." in mode:
            raise ValueError(f"{what}: a mode is a name without dots like 'train', 'eval' or 'val', got {mode!r}")
    return out


def _is_engine(value: Any) -> bool:
    """Whether a first positional argument is the seed's ``engine`` rather than a network."""
    return not isinstance(value, nn.Module) and hasattr(value, "register_hook")


class Model(nn.Module):
    """``out = model(batch)``: network, then the current mode's criterion and metric.

    ``criterion(net_out, batch)`` returns ``{'loss': tensor, ...}``;
    ``metric(cri_out, net_out, batch)`` returns ``{name: 0-dim tensor}`` and
    runs without autograd.  ``out`` merges the network output (a dict, or
    ``{'net_out': tensor}``), the criterion's and the metric's dicts.  The
    mode is ``'train'`` after ``model.train()`` and ``'eval'`` after
    ``model.eval()``; the engine sets another one (``'val'``) for an epoch of
    that mode when the model has a criterion or metric for it (a part that
    mode lacks is then the train or eval one).  A mode may have no criterion
    or metric, but training needs a ``'loss'``.

    The seed's signature ``Model(engine=None, cuda_tf=None, detach_tf=None,
    network=None, criterions={}, metrics={})`` is accepted too (an engine first).
    """

    #: Build the parts from the factories when given an engine and no network (the seed's DefaultModel).
    from_factories: ClassVar[bool] = False

    def __init__(
        self,
        network: nn.Module | Any = None,
        criterions: Mapping[str, Any] | Any = None,
        metrics: Mapping[str, Any] | Any = None,
        *seed_args: Any,
        engine: Any = None,
        cuda_tf: Callable[..., Any] | None = None,
        detach_tf: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        if engine is None and (_is_engine(network) or (network is None and not isinstance(criterions, Mapping)
                                                       and criterions is not None)):
            # the seed's positional order: (engine, cuda_tf, detach_tf, network, criterions, metrics)
            engine, cuda_tf, detach_tf = network, criterions or cuda_tf, metrics or detach_tf
            network, criterions, metrics = (list(seed_args) + [None, None, None])[:3]
        elif seed_args:
            raise TypeError(f"{type(self).__name__}() takes network, criterions, metrics; got {len(seed_args)} more")
        #: The seed's batch transforms, applied by :meth:`prepare_batch` (the engine moves batches itself).
        self.cuda_tf, self.detach_tf = cuda_tf, detach_tf
        self.mode = "train"
        self.network = network
        self.criterions = criterions
        self.metrics = metrics
        if network is None and engine is not None and self.from_factories:
            self.network = self._init_network(engine)
            self.criterions = self._init_criterions(engine)
            self.metrics = self._init_metrics(engine)
            self.eval()  # the seed's models start in eval mode

    # ------------------------------------------------------------------ the seed's factory calls
    def _init_network(self, engine: Any = None) -> nn.Module:
        """The network from ``model.network`` (the seed's ``DefaultModel._init_network``)."""
        from bootstrap_repro.models._factory import network_factory

        return network_factory(engine)

    def _init_criterions(self, engine: Any = None) -> dict[str, Any]:
        """``{mode: criterion}`` from ``model.criterion``, one per mode of :func:`model_modes`."""
        from bootstrap_repro.models._factory import criterions_per_mode

        return criterions_per_mode(engine, model_modes(engine))

    def _init_metrics(self, engine: Any = None) -> dict[str, Any]:
        """``{mode: metric}`` from ``model.metric``, one per mode of :func:`model_modes`."""
        from bootstrap_repro.models._factory import metrics_per_mode

        return metrics_per_mode(engine, model_modes(engine))

    # ------------------------------------------------------------------ parts per mode
    @property
    def criterions(self) -> dict[str, Any]:
        """``{mode: criterion}``; those that are modules are also submodules ``criterion_<mode>``."""
        return self._parts["criterion"]

    @criterions.setter
    def criterions(self, value: Mapping[str, Any] | None) -> None:
        self._set_parts("criterion", _check_modes(value, "criterions"))

    @property
    def metrics(self) -> dict[str, Any]:
        """``{mode: metric}``; those that are modules are also submodules ``metric_<mode>``."""
        return self._parts["metric"]

    @metrics.setter
    def metrics(self, value: Mapping[str, Any] | None) -> None:
        self._set_parts("metric", _check_modes(value, "metrics"))

    def _set_parts(self, kind: str, parts: dict[str, Any]) -> None:
        if "_parts" not in self.__dict__:
            self.__dict__["_parts"] = {p: {} for p in _PARTS}
        for mode in self._parts[kind]:
            self._modules.pop(f"{kind}_{mode}", None)
        self._parts[kind] = parts
        for mode, comp in parts.items():
            if isinstance(comp, nn.Module):
                self.add_module(f"{kind}_{mode}", comp)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Model:
        """Training mode (``self.mode = 'train'``), or evaluation mode with ``mode=False``."""
        super().train(mode)
        self.mode = "train" if mode else "eval"
        return self

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, skipping the criterions and metrics of modes this model lacks.

        An eval-only run builds no ``train`` criterion; the checkpoint of a training run has one.
        """
        parts = tuple(f"{kind}_" for kind in _PARTS)
        kept = OrderedDict((k, v) for k, v in state_dict.items()
                           if not k.startswith(parts) or k.split(".", 1)[0] in self._modules)
        metadata = getattr(state_dict, "_metadata", None)
        if metadata is not None:
            kept._metadata = metadata  # type: ignore[attr-defined]  # module versions
        return super().load_state_dict(kept, strict=strict, assign=assign)

    # ------------------------------------------------------------------ forward
    @property
    def is_cuda(self) -> bool:
        """The seed's flag: whether the parameters are on a GPU."""
        return next(self.parameters(), torch.empty(0)).is_cuda

    def prepare_batch(self, batch: Any) -> Any:
        """The seed's batch preparation: ``cuda_tf`` on a CUDA model, ``detach_tf`` in eval mode (when set)."""
        if self.cuda_tf is not None and self.is_cuda:
            batch = self.cuda_tf()(batch)
        if self.detach_tf is not None and not self.training:
            batch = self.detach_tf()(batch)
        return batch

    def run_network(self, batch: Any) -> Any:
        """Call the network on the batch (``SimpleModel`` passes ``batch['data']``)."""
        return self.network(batch)

    def forward(self, batch: Any) -> dict[str, Any]:
        mode = self.mode
        if self.cuda_tf is not None or self.detach_tf is not None:
            batch = self.prepare_batch(batch)
        net_out = self.run_network(batch)
        cri_out: Mapping[str, Any] = {}
        base = "train" if self.training else "eval"  # a mode without its own part uses this one's
        criterions, metrics = self._parts["criterion"], self._parts["metric"]
        criterion = criterions[mode] if mode in criterions else criterions.get(base)
        metric = metrics[mode] if mode in metrics else metrics.get(base)
        if criterion is not None:
            result = criterion(net_out, batch)
            cri_out = {"loss": result} if isinstance(result, torch.Tensor) else (result or {})
        if self.training and "loss" not in cri_out:
            raise OptionsError(
                "model.criterion: training needs a criterion that returns {'loss': tensor}; "
                "set model.criterion.name (e.g. nll) or model.criterion.import"
            )
        met_out: Mapping[str, Any] = {}
        if metric is not None:
            if torch.is_grad_enabled():
                with torch.no_grad():
                    met_out = metric(cri_out, net_out, batch) or {}
            else:  # evaluation: no context to enter per batch
                met_out = metric(cri_out, net_out, batch) or {}
        out: dict[str, Any] = dict(net_out) if isinstance(net_out, Mapping) else {"net_out": net_out}
        out.update(cri_out)
        out.update(met_out)
        return out


class DefaultModel(Model):
    """The seed's ``DefaultModel(engine)``: network, criterions and metrics from the factories (per mode)."""

    from_factories = True


class SimpleModel(DefaultModel):
    """A :class:`Model` whose network receives ``batch['data']`` instead of the batch (seed's ``simple``).

    ``SimpleModel(network, criterions, metrics)``, or ``SimpleModel(engine)`` as in the seed.
    """

    def run_network(self, batch: Any) -> Any:
        return self.network(batch["data"])
