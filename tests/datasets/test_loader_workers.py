"""Persistent DataLoader workers (``nb_threads > 0``): the same batches as a new loader per epoch."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from bootstrap_repro.datasets import Dataset


class Augmented(Dataset):
    """Items that draw from torch, random and numpy in the worker, and read the dataset's epoch."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        info = torch.utils.data.get_worker_info()
        return {"index": index, "t": torch.rand(2), "r": random.random(), "n": float(np.random.rand()),
                "epoch": self.epoch, "worker_seed": info.seed if info is not None else -1}


class Fresh(Augmented):
    persistent_workers = False


def batches(cls: type, epochs: range, **kw) -> list[dict]:
    ds = cls("train", batch_size=8, nb_threads=2, seed=3, **kw)
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        for b in ds.make_batch_loader():
            out.append({k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in b.items()})
    return out


@pytest.mark.parametrize("shuffle", [True, False])
def test_persistent_workers_give_the_batches_of_a_new_loader_per_epoch(shuffle):
    fresh = batches(Fresh, range(3), shuffle=shuffle)
    assert batches(Augmented, range(3), shuffle=shuffle) == fresh
    assert batches(Augmented, range(1, 3), shuffle=shuffle) == fresh[5:]  # a resume at epoch 1
    assert [b["epoch"][0] for b in fresh] == [0] * 5 + [1] * 5 + [2] * 5
    assert fresh[0]["r"] != fresh[5]["r"]  # each epoch draws anew


def test_one_loader_per_dataset_with_workers_kept():
    ds = Augmented("train", batch_size=8, nb_threads=2, seed=3)
    first = ds.make_batch_loader()
    assert first.persistent_workers and first.num_workers == 2
    seeds = {int(b["worker_seed"][0]) for b in first}  # one per worker
    ds.set_epoch(1)
    assert ds.make_batch_loader() is first  # the same loader, its workers still up
    list(first)
    assert ds.make_batch_loader(batch_size=4) is not first  # other arguments: another loader
    assert len(seeds) == 2
    assert "_persistent" not in pickle.loads(pickle.dumps(ds)).__dict__  # never pickled with the dataset


def test_no_workers_no_persistence():
    ds = Augmented("train", batch_size=8, nb_threads=0)
    loader = ds.make_batch_loader()
    assert not loader.persistent_workers and ds.make_batch_loader() is not loader
