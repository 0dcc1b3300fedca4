"""Optimizers: the :class:`Optimizer` wrapper (clipping, per-epoch LR scheduler) and :func:`factory`.

>>> engine.optimizer = optimizers.factory(engine.model, engine)
>>> engine.optimizer.zero_grad(); out['loss'].backward(); engine.optimizer.step()
"""

from bootstrap_repro.optimizers._factory import LR_SCHEDULERS, OPTIMIZERS, factory
from bootstrap_repro.optimizers._optimizer import Optimizer

__all__ = ["Optimizer", "factory", "OPTIMIZERS", "LR_SCHEDULERS"]
