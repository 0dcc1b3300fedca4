"""The base class of every dataset: items are dicts, batches come from :meth:`Dataset.make_batch_loader`."""

from __future__ import annotations

import abc
import array
import inspect
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.utils.data as data

from bootstrap_repro.errors import OptionsError, did_you_mean

__all__ = ["Dataset", "seed_worker", "check_split", "is_seed_call", "Collated"]

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


class _EpochBatch(list):  # type: ignore[type-arg]
    """A batch of indices from :meth:`Dataset.make_batch_loader`'s loader, with the base seed and
    epoch its (persistent) worker must start from.  Only such a batch is read whole with
    :meth:`Dataset.get_collated_batch` (another loader over the dataset gets a list of items)."""

    seed: int | None = None
    epoch: int = 0
    #: Read whole: decided once per epoch, when the loader's iteration starts (:meth:`Dataset._reads_batches`).
    whole: bool = False


class Collated:
    """A batch the dataset built whole (:meth:`Dataset.get_collated_batch`), passed through the loader's
    collate step unchanged."""

    __slots__ = ("batch",)

    def __init__(self, batch: Any) -> None:
        self.batch = batch


class _CollateOrPass:
    """The loader's ``collate_fn``: a :class:`Collated` batch as it is, a list of items collated
    with the dataset's ``collate_fn`` (picklable, for workers started by spawn)."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: Any) -> Any:
        return items.batch if type(items) is Collated else self.collate_fn(items)


def gather(indices: Sequence[int], *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(ids, t[ids] for each tensor)``: the rows of a batch taken in one op per tensor, for a
    :meth:`Dataset.get_collated_batch` over in-memory tensors.

    ``ids`` is the int64 tensor of ``indices`` (``default_collate`` of the items' int indices).
    It is built from a packed array (~5 us for 64 indices, against ~14 for ``torch.tensor(list)``),
    and the rows are taken with ``index_select`` (half the time of ``t[ids]``); the values are
    the same.  Negative indices count from the end, as ``t[i]`` does.
    """
    try:
        # cloned: a tensor of its own, resizable, as torch.tensor's (frombuffer's is the array's memory)
        ids = torch.frombuffer(array.array("q", indices), dtype=torch.int64).clone() if len(indices) else \
            torch.empty(0, dtype=torch.int64)
    except (TypeError, OverflowError, ValueError):  # not plain ints (e.g. 0-dim tensors of another type)
        ids = torch.as_tensor([int(i) for i in indices], dtype=torch.int64)
    if len(indices) and min(indices) < 0:
        return (ids, *(t[ids] for t in tensors))
    return (ids, *(t.index_select(0, ids) for t in tensors))


def _defining_class(cls: type, name: str) -> type | None:
    """The class of ``cls``'s MRO whose body defines ``name``."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


class _EpochBatchSampler(data.Sampler[list[int]]):
    """The loader's batches of indices, each tagged with the epoch's worker seed (see :class:`_Reseeding`)."""

    def __init__(self, sampler: data.Sampler[int], batch_size: int, drop_last: bool,
                 reads_batches: Callable[[], bool] | None = None) -> None:
        self.batches = data.BatchSampler(sampler, batch_size, drop_last)
        self.seed: int | None = None
        self.epoch = 0
        self.reads_batches = reads_batches

    def __iter__(self) -> Iterator[list[int]]:
        seed, epoch = self.seed, self.epoch
        whole = bool(self.reads_batches()) if self.reads_batches is not None else False  # once per epoch
        for indices in self.batches:
            batch = _EpochBatch(indices)
            batch.seed, batch.epoch, batch.whole = seed, epoch, whole
            yield batch

    def __len__(self) -> int:
        return len(self.batches)


class _Reseeding(data.Dataset):  # type: ignore[type-arg]
    """The dataset as a persistent worker reads it: at the first batch of each new epoch the
    worker is seeded as a fresh worker of that epoch would be (torch, ``random``, numpy, then the
    loader's ``worker_init_fn``), and the dataset's ``epoch`` is set; batches are then the same as
    with a new loader per epoch, for any ``nb_threads`` and after a resume."""

    def __init__(self, dataset: Any, worker_init_fn: Callable[[int], None] | None) -> None:
        self.dataset, self.worker_init_fn = dataset, worker_init_fn
        self._seed: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, batch: list[int]) -> list[Any]:
        seed = getattr(batch, "seed", None)
        if seed is not None and seed != self._seed:
            self._reseed(seed, batch.epoch)  # type: ignore[attr-defined]
        return self.dataset.__getitems__(batch)

    def _reseed(self, base_seed: int, epoch: int) -> None:
        """What ``torch.utils.data``'s worker loop does at a worker's start, with this epoch's base seed."""
        self._seed = base_seed
        info = data.get_worker_info()
        worker_id = info.id if info is not None else 0
        seed = base_seed + worker_id
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            import numpy as np
            from torch.utils.data._utils.worker import _generate_state
        except ImportError:
            pass
        else:
            np.random.seed(_generate_state(base_seed, worker_id))
        if info is not None:
            object.__setattr__(info, "seed", seed)  # WorkerInfo is read-only once made
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = epoch
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)


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
    #: With ``nb_threads > 0``, keep the worker processes from one epoch to the next (one loader per
    #: dataset).  Workers are re-seeded and get ``epoch`` at each epoch, so batches do not change;
    #: other attributes changed after the first epoch do not reach them: set False for a dataset
    #: whose items depend on such state.
    persistent_workers: ClassVar[bool] = True

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

    #: Subclasses may define ``get_collated_batch(indices) -> batch``: the batch of ``indices`` built whole,
    #: equal to ``collate_fn([self[i] for i in indices])`` (e.g. one indexing of in-memory tensors
    #: instead of one per item).  The loader of :meth:`make_batch_loader` uses it while
    #: ``collate_fn`` is the default one and no subclass below overrides ``__getitem__`` alone.
    get_collated_batch: ClassVar[Callable[..., Any] | None] = None

    #: The ``__getitem__`` a class's ``get_collated_batch`` was written with (set when the class is made).
    _paired_getitem: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_collated_batch" in vars(cls):
            cls._paired_getitem = cls.__getitem__

    def __getitems__(self, indices: list[int]) -> Any:
        """The items of one batch (torch's batched fetch): a :class:`Collated` batch from
        :meth:`get_collated_batch` when it applies (see there; decided when each epoch's iteration
        starts), else the list of items."""
        if type(indices) is _EpochBatch and indices.whole:
            return Collated(self.get_collated_batch(indices))  # type: ignore[misc]
        return [self[i] for i in indices]

    def _reads_batches(self) -> bool:
        """Whether :meth:`get_collated_batch` stands for ``collate_fn`` over ``__getitem__`` for this dataset:
        the default ``collate_fn``, and the ``__getitem__`` in use is the one the method was written with (not
        one a subclass overrides alone, nor one patched onto the class later)."""
        cls = type(self)
        owner = _defining_class(cls, "get_collated_batch")
        return (self.collate_fn is data.default_collate and owner is not None and owner is not Dataset
                and callable(getattr(self, "get_collated_batch", None))
                and getattr(owner, "_paired_getitem", None) is cls.__getitem__)

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
        batch_size = self.batch_size if batch_size is None else batch_size
        if self.nb_threads > 0 and self.persistent_workers:
            return self._persistent_loader(batch_size, shuffle)
        return self._new_loader(batch_size, shuffle, persistent=False)

    def _new_loader(self, batch_size: int, shuffle: bool, persistent: bool) -> data.DataLoader:
        """A loader over this dataset for the current epoch; its batches are those of
        ``DataLoader(shuffle=, sampler=, batch_size=, drop_last=, generator=)``, tagged (:class:`_EpochBatch`)."""
        generator = self.make_generator()
        if self.sampler is not None:
            sampler: data.Sampler[int] = self.sampler
        elif shuffle:
            sampler = data.RandomSampler(self, generator=generator)
        else:
            sampler = data.SequentialSampler(self)
        batches = _EpochBatchSampler(sampler, batch_size, self.drop_last, self._reads_batches)
        batches.epoch = self.epoch
        return data.DataLoader(
            _Reseeding(self, seed_worker) if persistent else self,
            batch_sampler=batches,
            num_workers=self.nb_threads,
            collate_fn=_CollateOrPass(self.collate_fn),
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker,
            generator=generator,
            persistent_workers=persistent,
        )

    def _persistent_loader(self, batch_size: int, shuffle: bool) -> data.DataLoader:
        """This dataset's loader with persistent workers, set to the current epoch.

        Batches equal those of a new loader per epoch: the generator is re-seeded with
        ``seed + epoch`` and, as a new loader does, gives the workers' base seed first, then the
        order; each worker re-seeds from it at its first batch of the epoch.
        """
        key = (batch_size, shuffle, self.sampler, self.nb_threads, self.pin_memory, self.drop_last, self.collate_fn)
        cached = self.__dict__.get("_persistent")
        if cached is not None and cached[0] == key:
            loader = cached[1]
            loader.generator.manual_seed(self.seed + self.epoch)
            batches = loader.batch_sampler
            if loader._iterator is not None:  # its workers run: they re-seed from this epoch's base seed
                batches.seed = int(torch.empty((), dtype=torch.int64).random_(generator=loader.generator).item())
            batches.epoch = self.epoch
            return loader
        loader = self._new_loader(batch_size, shuffle, persistent=True)
        self.__dict__["_persistent"] = (key, loader)
        return loader

    def __getstate__(self) -> dict[str, Any]:
        """The dataset without its persistent loader (a worker started by spawn unpickles it)."""
        state = self.__dict__.copy()
        state.pop("_persistent", None)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, len={len(self)}, batch_size={self.batch_size})"
