"""``digits``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), no download."""

from __future__ import annotations

import functools
from typing import Any

import torch

from bootstrap_repro.datasets._dataset import Dataset, gather
from bootstrap_repro.errors import ReproError

__all__ = ["Digits"]


class MissingDependencyError(ReproError, ImportError):
    """An optional dependency is not installed."""


@functools.lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError(
            "dataset.name: digits needs scikit-learn; pip install 'bootstrap-repro[examples]'"
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # [N,1,8,8] in [0,1]
    targets = torch.as_tensor(bunch.target, dtype=torch.long)
    return images, targets


class Digits(Dataset):
    """The digits set split into ``train`` (80 %) and ``val`` (20 %); ``test`` is ``val``.

    The split is a permutation drawn with :attr:`SPLIT_SEED`, independent of
    ``misc.seed``: every experiment sees the same train/val items.
    Items: ``{'data': float32 [1,8,8] in [0,1], 'class_id': long, 'index': int}``.
    """

    splits = ("train", "val", "test")
    nb_classes = 10
    SPLIT_SEED = 1337
    TRAIN_FRACTION = 0.8

    def __init__(self, split: str = "train", **kwargs: Any) -> None:
        super().__init__(split, **kwargs)
        images, targets = _load()
        perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(self.SPLIT_SEED))
        nb_train = int(len(targets) * self.TRAIN_FRACTION)
        ids = perm[:nb_train] if split == "train" else perm[nb_train:]
        #: Positions of this split's items in ``load_digits()``.
        self.ids = ids
        self.data = images[ids].contiguous()
        self.class_id = targets[ids].contiguous()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"data": self.data[index], "class_id": self.class_id[index], "index": index}

    def get_collated_batch(self, indices: list[int]) -> dict[str, Any]:
        """The batch of ``indices`` in one indexing per tensor: equal to ``default_collate`` of the items."""
        ids, data, class_id = gather(indices, self.data, self.class_id)
        return {"data": data, "class_id": class_id, "index": ids}
