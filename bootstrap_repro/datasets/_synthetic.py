"""``synthetic``: Gaussian blobs, deterministic and dependency-free (for tests and demos)."""

from __future__ import annotations

from typing import Any

import torch

from bootstrap_repro.datasets._dataset import Dataset, gather

__all__ = ["Synthetic"]


class Synthetic(Dataset):
    """``nb_items`` vectors of ``dim`` features around ``nb_classes`` random centres.

    The centres depend only on ``data_seed`` (option ``dataset.seed``); each
    split draws its items from its own seed derived from it, so ``train`` and
    ``val`` differ but share the centres.  Items:
    ``{'data': float32 [dim], 'class_id': long, 'index': int}``.
    """

    splits = ("train", "val")
    option_args = {"nb_items": "nb_items", "nb_classes": "nb_classes", "dim": "dim", "noise": "noise",
                   "seed": "data_seed"}

    def __init__(
        self,
        split: str = "train",
        nb_items: int = 512,
        nb_classes: int = 4,
        dim: int = 16,
        noise: float = 1.0,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(split, **kwargs)
        self.nb_items, self.nb_classes, self.dim, self.noise = int(nb_items), int(nb_classes), int(dim), float(noise)
        self.data_seed = int(data_seed)
        gen = torch.Generator().manual_seed(self.data_seed)
        centers = torch.randn(self.nb_classes, self.dim, generator=gen) * 3.0
        split_seeds = torch.randint(0, 2**62, (len(self.splits),), generator=gen)
        gen.manual_seed(int(split_seeds[self.splits.index(split)]))
        class_id = torch.randperm(self.nb_items, generator=gen) % self.nb_classes
        noise_ = torch.randn(self.nb_items, self.dim, generator=gen) * self.noise
        self.data = (centers[class_id] + noise_).to(torch.float32)
        self.class_id = class_id.to(torch.long)

    def __len__(self) -> int:
        return self.nb_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"data": self.data[index], "class_id": self.class_id[index], "index": index}

    def get_collated_batch(self, indices: list[int]) -> dict[str, Any]:
        """The batch of ``indices`` in one indexing per tensor: equal to ``default_collate`` of the items."""
        ids, data, class_id = gather(indices, self.data, self.class_id)
        return {"data": data, "class_id": class_id, "index": ids}
