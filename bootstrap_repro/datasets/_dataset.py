"""The base class of every dataset: items are dicts, batches come from :meth:`Dataset.make_batch_loader`."""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.utils.data as data

from bootstrap_repro.errors import OptionsError, did_you_mean

__all__ = ["Dataset", "seed_worker", "check_split"]

#: The split that shuffles by default (``shuffle=None``).
TRAIN_SPLIT = "train"


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed.

    torch seeds each worker with ``base_seed + worker_id``, and ``base_seed``
    comes from the loader's generator, so workers are deterministic too.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        return
    np.random.seed(seed)


def check_split(split: Any, valid: Sequence[str], key: str, dataset: str) -> str:
    """Return ``split`` if it is one of ``valid``; else raise :class:`OptionsError` naming ``key``."""
    if split in valid:
        return split
    hint = did_you_mean(str(split), valid) if isinstance(split, str) else ""
    raise OptionsError(
        f"{key}: unknown split {split!r} for dataset '{dataset}'{hint} (valid: {', '.join(valid)})"
    )


class Dataset(data.Dataset, abc.ABC):
    """A map-style dataset whose items are dicts of tensors (or numbers).

    Subclasses implement ``__len__`` and ``__getitem__`` (returning e.g.
    ``{'data': tensor, 'class_id': long tensor, 'index': int}``).  The batch
    order of epoch ``e`` is a pure function of ``seed + e`` (set with
    :meth:`set_epoch`), for any ``nb_threads``: a resumed run sees the same data.

    Set :attr:`sampler` (e.g. a ``DistributedSampler``) to replace shuffling;
    :meth:`set_epoch` forwards the epoch to it.
    """

    #: Valid splits of a built-in dataset (empty: not checked).
    splits: ClassVar[tuple[str, ...]] = ()
    #: Extra ``dataset.<key>`` options of a built-in -> its constructor argument.
    option_args: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        split: str,
        batch_size: int = 64,
        nb_threads: int = 0,
        shuffle: bool | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        dir_data: str | None = None,
    ) -> None:
        if self.splits:
            check_split(split, self.splits, "split", type(self).__name__)
        self.split = split
        self.batch_size = int(batch_size)
        self.nb_threads = int(nb_threads)
        self.shuffle = (split == TRAIN_SPLIT) if shuffle is None else bool(shuffle)
        self.pin_memory = bool(pin_memory)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.dir_data = dir_data
        self.epoch = 0
        #: When set, used by the loader instead of shuffling (e.g. a ``DistributedSampler``).
        self.sampler: data.Sampler[int] | None = None
        #: Turns a list of items into a batch; dicts become dicts of stacked tensors.
        self.collate_fn: Callable[[list[Any]], Any] = data.default_collate

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]:
        """The item at ``index``, as a dict."""

    def set_epoch(self, epoch: int) -> None:
        """Select the data order of ``epoch`` (called by the engine before each epoch)."""
        self.epoch = int(epoch)
        set_sampler_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_sampler_epoch):
            set_sampler_epoch(self.epoch)

    def make_generator(self) -> torch.Generator:
        """A fresh generator seeded with ``seed + epoch``."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return generator

    def make_batch_loader(self, batch_size: int | None = None, shuffle: bool | None = None) -> data.DataLoader:
        """A DataLoader over this dataset for the current epoch.

        Its order (and the seeds of its workers) depend only on ``seed + epoch``;
        it never draws from the global torch RNG.
        """
        shuffle = self.shuffle if shuffle is None else shuffle
        return data.DataLoader(
            self,
            batch_size=self.batch_size if batch_size is None else batch_size,
            shuffle=shuffle if self.sampler is None else None,
            sampler=self.sampler,
            num_workers=self.nb_threads,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            drop_last=self.drop_last,
            worker_init_fn=seed_worker,
            generator=self.make_generator(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, len={len(self)}, batch_size={self.batch_size})"
