"""``dataset.import``: random 32x32 RGB images with 10 classes, fetched a batch at a time."""

from __future__ import annotations

from typing import Any

import torch

from bootstrap_repro.datasets import Dataset


class RandomImages(Dataset):
    """Images live in one uint8 tensor; ``__getitems__`` slices a whole batch (no per-item collate)."""

    def __init__(self, split: str, nb_items: int, seed: int, **kw: Any) -> None:
        super().__init__(split, **kw)
        g = torch.Generator().manual_seed(seed + (split == "val"))
        self.images = torch.randint(0, 256, (nb_items, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (nb_items,), generator=g)
        self.collate_fn = lambda batch: batch  # __getitems__ already returns a batch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices)
        return {"data": self.images[idx].float().div_(255), "class_id": self.labels[idx]}


def factory(engine: Any) -> dict[str, RandomImages]:
    opt = engine.options["dataset"]
    kw = dict(batch_size=opt["batch_size"], nb_threads=opt["nb_threads"], seed=engine.seed,
              pin_memory=engine.device.type == "cuda")
    return {"train": RandomImages("train", opt["nb_items"], **kw),
            "eval": RandomImages("val", max(opt["nb_items"] // 10, 1), **kw)}
