"""Models: a :class:`Model` (network + criterion + metric), built-ins and :func:`factory`.

>>> engine.model = models.factory(engine)
>>> out = engine.model(batch); out['loss'].backward()   # out also has 'acctop1', 'net_out'...
"""

from bootstrap_repro.models._criterions import BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss, TorchLoss
from bootstrap_repro.models._factory import (
    CRITERIONS,
    METRICS,
    MODELS,
    NETWORKS,
    criterion_factory,
    criterions_per_mode,
    factory,
    metric_factory,
    metrics_per_mode,
    network_factory,
)
from bootstrap_repro.models._metrics import Accuracy, accuracy
from bootstrap_repro.models._model import DefaultModel, Model, SimpleModel
from bootstrap_repro.models._networks import MLP, LeNet

__all__ = [
    "Model",
    "DefaultModel",
    "SimpleModel",
    "MLP",
    "LeNet",
    "NLLLoss",
    "CrossEntropyLoss",
    "BCEWithLogitsLoss",
    "TorchLoss",
    "Accuracy",
    "accuracy",
    "factory",
    "network_factory",
    "criterion_factory",
    "metric_factory",
    "criterions_per_mode",
    "metrics_per_mode",
    "MODELS",
    "NETWORKS",
    "CRITERIONS",
    "METRICS",
]
