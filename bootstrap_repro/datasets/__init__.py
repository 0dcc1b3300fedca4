"""Datasets: a :class:`Dataset` base, built-ins (``digits``, ``synthetic``) and :func:`factory`.

>>> engine.dataset = datasets.factory(engine)        # {'train': ds, 'eval': ds}
>>> for batch in engine.dataset['train'].make_batch_loader(): ...
"""

from bootstrap_repro.datasets._dataset import Dataset, gather, seed_worker
from bootstrap_repro.datasets._digits import Digits
from bootstrap_repro.datasets._factory import DATASETS, factory
from bootstrap_repro.datasets._synthetic import Synthetic

__all__ = ["Dataset", "Digits", "Synthetic", "DATASETS", "factory", "gather", "seed_worker"]
