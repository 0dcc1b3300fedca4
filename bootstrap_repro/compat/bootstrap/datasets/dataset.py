"""``bootstrap.datasets.dataset``: the seed's ``Dataset`` and ``ListDatasets`` on bootstrap-repro's ``Dataset``.

Both take the seed's arguments (keywords too) and collate with the seed's ``ListDictsToDictLists`` +
``StackTensors`` (lists of non-tensors stay lists, where bootstrap-repro's ``Dataset`` uses torch's
``default_collate``).  ``make_batch_loader`` is bootstrap-repro's: the batch order of
an epoch depends only on ``seed + epoch`` (the engine calls ``set_epoch``), for any ``nb_threads``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from bootstrap_repro.datasets import Dataset as _NativeDataset
from bootstrap_repro.options import Options as _NativeOptions

from . import transforms as bootstrap_tf

__all__ = ["Dataset", "ListDatasets"]


def _run_seed() -> int:
    """The current options' ``misc.seed`` (the seed's shuffling followed it), else 0."""
    return int(_NativeOptions.current().get("misc.seed", 0) or 0) if _NativeOptions.has_current() else 0


def _seed_collate() -> bootstrap_tf.Compose:
    return bootstrap_tf.Compose([bootstrap_tf.ListDictsToDictLists(), bootstrap_tf.StackTensors()])


class Dataset(_NativeDataset):
    """The seed's dataset base: subclasses set their data and implement ``__len__`` and ``__getitem__``."""

    def __init__(self, dir_data: str | None = None, split: str = "train", batch_size: int = 4, shuffle: bool = False,
                 pin_memory: bool = False, nb_threads: int = 4) -> None:
        super().__init__(split=split, batch_size=batch_size, nb_threads=nb_threads, shuffle=shuffle,
                         pin_memory=pin_memory, dir_data=dir_data, seed=_run_seed())
        self.collate_fn = _seed_collate()


class ListDatasets(_NativeDataset):
    """Several datasets seen as one (items of the first, then of the second...).

    ``bootstrapping=True`` keeps a random 95 % of the items for the ``train`` split and the other
    5 % for any other split (drawn with numpy from ``seed``, as in the seed).
    """

    def __init__(self, datasets: Sequence[Any], split: str = "train", batch_size: int = 4, shuffle: bool = False,
                 pin_memory: bool = False, nb_threads: int = 4, bootstrapping: bool = False, seed: int = 1337) -> None:
        super().__init__(split=split, batch_size=batch_size, nb_threads=nb_threads, shuffle=shuffle,
                         pin_memory=pin_memory, seed=seed)
        if not datasets:
            raise ValueError("ListDatasets: expected at least one dataset, got none")
        self.datasets = list(datasets)
        self.bootstrapping = bootstrapping
        self.make_lengths_and_ids()

    def make_lengths_and_ids(self) -> None:
        self.lengths = [len(d) for d in self.datasets]
        self.cum_lengths = list(itertools.accumulate(self.lengths))
        self.cum_lengths_min = [0, *self.cum_lengths]
        self.collate_fn = getattr(self.datasets[0], "collate_fn", None) or _seed_collate()
        self.ids: Sequence[int] = self.make_bootstrapping() if self.bootstrapping else range(sum(self.lengths))

    def make_bootstrapping(self) -> Sequence[int]:
        try:
            import numpy as np
        except ImportError:
            raise ImportError("ListDatasets(bootstrapping=True) needs numpy: pip install numpy") from None
        nb_items = sum(self.lengths)
        rnd = np.random.RandomState(seed=self.seed)
        indices = rnd.choice(nb_items, size=int(nb_items * 0.95), replace=False)
        if self.split != "train":
            indices = np.array(list(set(np.arange(nb_items)) - set(indices)))
        return [int(i) for i in indices]

    def __getitem__(self, index: int) -> Any:
        idx = self.ids[index]
        i = bisect.bisect_right(self.cum_lengths, idx)
        return self.datasets[i][idx - self.cum_lengths_min[i]]

    def __len__(self) -> int:
        return len(self.ids)
