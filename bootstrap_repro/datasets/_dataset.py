"""The base class of every dataset: items are dicts, batches come from :meth:`Dataset.make_batch_loader`."""

from __future__ import annotations

import abc
import inspect
import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.utils.data as data

from bootstrap_repro.errors import OptionsError, did_you_mean

__all__ = ["Dataset", "seed_worker", "check_split", "is_seed_call"]

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


NATIVE_SIGNATURE = ("Dataset(split, batch_size=64, nb_threads=0, shuffle=None, pin_memory=False, drop_last=False, "
                    "seed=0, dir_data=None)")
SEED_SIGNATURE = "Dataset(dir_data, split='train', batch_size=4, shuffle=False, pin_memory=False, nb_threads=4)"


def _native_args(
    split: str,
    batch_size: int = 64,
    nb_threads: int = 0,
    shuffle: bool | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    dir_data: str | None = None,
) -> dict[str, Any]:
    """The native constructor's arguments."""
    return dict(split=split, batch_size=batch_size, nb_threads=nb_threads, shuffle=shuffle, pin_memory=pin_memory,
                drop_last=drop_last, seed=seed, dir_data=dir_data)


def _seed_args(
    dir_data: str | None,
    split: str = "train",
    batch_size: int = 4,
    shuffle: bool = False,
    pin_memory: bool = False,
    nb_threads: int = 4,
    *,
    drop_last: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """bootstrap.pytorch's ``Dataset(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)``, its defaults.

    ``seed`` defaults to the current options' ``misc.seed`` (the seed shuffled with the global RNG,
    seeded with it).
    """
    if seed is None:
        from bootstrap_repro.options import Options

        seed = int(Options.current().get("misc.seed", 0) or 0) if Options.has_current() else 0
    return dict(split=split, batch_size=batch_size, nb_threads=nb_threads, shuffle=shuffle, pin_memory=pin_memory,
                drop_last=drop_last, seed=seed, dir_data=dir_data)


def is_seed_call(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether constructor arguments are in the seed's order ``(dir_data, split, batch_size, ...)``.

    The seed's when: a positional argument and ``split=``; a string second (native: ``batch_size``);
    ``dir_data=`` without ``split``; or a lone positional that is a path (``data/mnist``: it has a ``/``).
    """
    if args and "split" in kwargs:
        return True
    if len(args) >= 2:
        return isinstance(args[1], str)
    if not args:
        return "dir_data" in kwargs and "split" not in kwargs
    first = args[0]
    return isinstance(first, os.PathLike) or (isinstance(first, str) and ("/" in first or os.sep in first))


class Dataset(data.Dataset, abc.ABC):
    """A map-style dataset whose items are dicts of tensors (or numbers).

    Subclasses implement ``__len__`` and ``__getitem__`` (returning e.g.
    ``{'data': tensor, 'class_id': long tensor, 'index': int}``).  The batch
    order of epoch ``e`` is a pure function of ``seed + e`` (set with
    :meth:`set_epoch`), for any ``nb_threads``: a resumed run sees the same data.

    Set :attr:`sampler` (e.g. a ``DistributedSampler``) to replace shuffling;
    :meth:`set_epoch` forwards the epoch to it.

    Constructor: ``Dataset(split, batch_size=64, nb_threads=0, shuffle=None,
    pin_memory=False, drop_last=False, seed=0, dir_data=None)``, or the seed's
    ``Dataset(dir_data, split='train', batch_size=4, shuffle=False,
    pin_memory=False, nb_threads=4)`` (told apart by :func:`is_seed_call`).
    """

    #: Valid splits of a built-in dataset (empty: not checked).
    splits: ClassVar[tuple[str, ...]] = ()
    #: Extra ``dataset.<key>`` options of a built-in -> its constructor argument.
    option_args: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bind = _seed_args if is_seed_call(args, kwargs) else _native_args
        try:
            inspect.signature(bind).bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}(): {exc}; expected {NATIVE_SIGNATURE} "
                            f"or the seed's {SEED_SIGNATURE}") from None
        self._init(**bind(*args, **kwargs))

    def _init(self, split: str, batch_size: int, nb_threads: int, shuffle: bool | None, pin_memory: bool,
              drop_last: bool, seed: int, dir_data: str | None) -> None:
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
