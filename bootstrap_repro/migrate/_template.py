"""The project that ``bootstrap-repro new`` and ``bootstrap.new`` write: bootstrap.pytorch's ``new``, made to run.

:data:`SEED_TEMPLATE` is the project on the seed's API (``bootstrap.*`` imports), as ``python -m
bootstrap.new`` writes it; :func:`new_project` with ``native=True`` (``bootstrap-repro new``) writes it
migrated to bootstrap-repro's API by :func:`~bootstrap_repro.migrate.migrate_sources`, so both stay
the same project: a synthetic binary dataset, a one-layer network, a BCE criterion, an accuracy
metric and ``<name>/options/<name>.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path

from bootstrap_repro.errors import OptionsError

__all__ = ["SEED_TEMPLATE", "render", "new_project"]

#: Relative path -> content; ``{lower}`` and ``{Name}`` are replaced by the project's names.
SEED_TEMPLATE: dict[str, str] = {
    ".gitignore": "logs/\n__pycache__/\n",
    "README.md": """\
# {Name}

Train it from this folder:

    bootstrap-repro run -o {lower}/options/{lower}.yaml

Experiments go to `logs/{lower}/` (`--exp.dir` to change it).
""",
    "{lower}/__init__.py": "",
    "{lower}/datasets/__init__.py": "",
    "{lower}/datasets/{lower}.py": '''\
import torch

from bootstrap.datasets.dataset import Dataset


class {Name}Dataset(Dataset):
    """``nb_items`` random vectors of size 10; the first half has target 1, the other half 0."""

    def __init__(self, dir_data=None, split="train", batch_size=4, shuffle=False, pin_memory=False,
                 nb_threads=0, nb_items=100, **kwargs):
        super().__init__(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        self.data = torch.randn(nb_items, 10, generator=generator)
        self.target = torch.zeros(nb_items)
        self.target[: nb_items // 2] = 1
        self.data[: nb_items // 2] += 1  # something to learn

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return {"data": self.data[index], "target": self.target[index]}
''',
    "{lower}/datasets/factory.py": '''\
from bootstrap.lib.logger import Logger
from bootstrap.lib.options import Options

from .{lower} import {Name}Dataset


def factory(engine=None):
    Logger()("Creating dataset...")
    opt = Options()["dataset"]
    dataset = {}
    if opt.get("train_split", None):
        dataset["train"] = factory_split(opt["train_split"])
    if opt.get("eval_split", None):
        dataset["eval"] = factory_split(opt["eval_split"])
    return dataset


def factory_split(split):
    opt = Options()["dataset"]
    return {Name}Dataset(
        dir_data=opt["dir"],
        split=split,
        batch_size=opt["batch_size"],
        shuffle="train" in split,
        nb_threads=opt["nb_threads"],
        nb_items=opt.get("nb_items", 100),
    )
''',
    "{lower}/models/__init__.py": "",
    "{lower}/models/networks/__init__.py": "",
    "{lower}/models/networks/{lower}.py": '''\
import torch.nn as nn


class {Name}Network(nn.Module):

    def __init__(self, dim_in=10, dim_out=1, **kwargs):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_out), nn.Sigmoid())

    def forward(self, batch):
        return {"pred": self.net(batch["data"])}
''',
    "{lower}/models/networks/factory.py": '''\
from bootstrap.lib.options import Options

from .{lower} import {Name}Network


def factory(engine=None):
    opt = Options()["model.network"]
    if opt["name"] != "{lower}":
        raise ValueError(opt["name"])
    return {Name}Network(**{k: v for k, v in opt.items() if k not in ("name", "import")})
''',
    "{lower}/models/criterions/__init__.py": "",
    "{lower}/models/criterions/{lower}.py": '''\
import torch.nn as nn


class {Name}Criterion(nn.Module):

    def __init__(self, **kwargs):
        super().__init__()
        self.bce_loss = nn.BCELoss()

    def forward(self, net_out, batch):
        return {"loss": self.bce_loss(net_out["pred"].squeeze(1), batch["target"])}
''',
    "{lower}/models/criterions/factory.py": '''\
from bootstrap.lib.options import Options

from .{lower} import {Name}Criterion


def factory(engine=None, mode=None):
    opt = Options()["model.criterion"]
    if opt["name"] != "{lower}":
        raise ValueError(opt["name"])
    return {Name}Criterion()
''',
    "{lower}/models/metrics/__init__.py": "",
    "{lower}/models/metrics/{lower}.py": '''\
import torch.nn as nn


class {Name}Metric(nn.Module):

    def __init__(self, thresh=0.5, **kwargs):
        super().__init__()
        self.thresh = thresh

    def forward(self, cri_out, net_out, batch):
        pred = (net_out["pred"].squeeze(1) > self.thresh).float()
        return {"accuracy": (pred == batch["target"]).float().mean()}
''',
    "{lower}/models/metrics/factory.py": '''\
from bootstrap.lib.options import Options

from .{lower} import {Name}Metric


def factory(engine=None, mode=None):
    opt = Options()["model.metric"]
    if opt["name"] != "{lower}":
        raise ValueError(opt["name"])
    return {Name}Metric(thresh=opt.get("thresh", 0.5))
''',
    "{lower}/options/{lower}.yaml": """\
exp:
  dir: logs/{lower}/1_exp
  resume:  # last, best_[...], or empty (from scratch)
dataset:
  import: {lower}.datasets.factory
  dir: data/{lower}
  train_split: train
  eval_split: val
  nb_threads: 0
  batch_size: 64
  nb_items: 100
model:
  name: default
  network:
    import: {lower}.models.networks.factory
    name: {lower}
    dim_in: 10
    dim_out: 1
  criterion:
    import: {lower}.models.criterions.factory
    name: {lower}
  metric:
    import: {lower}.models.metrics.factory
    name: {lower}
    thresh: 0.5
optimizer:
  name: adam
  lr: 0.0004
engine:
  name: default
  nb_epochs: 10
  print_freq: 10
  saving_criteria:
  - loss:min      # save when new_best < best
  - accuracy:max  # save when new_best > best
misc:
  cuda: false
  seed: 1337
view:
- logs:train_epoch.loss+logs:eval_epoch.loss
- logs:train_batch.loss
- logs:train_epoch.accuracy+logs:eval_epoch.accuracy
""",
}


def render(name: str) -> dict[str, str]:
    """The files of project ``name`` on the seed's API: relative path -> text."""
    lower = name.lower()
    return {rel.replace("{lower}", lower): text.replace("{lower}", lower).replace("{Name}", name)
            for rel, text in SEED_TEMPLATE.items()}


def new_project(name: str, parent: str | Path = ".", *, native: bool = True) -> Path:
    """Write ``<parent>/<name lower>.bootstrap.pytorch/`` and return it (bootstrap-repro's API unless not ``native``).

    ``name`` must be a Python identifier (it names the classes and the package); ``parent`` must
    exist and the project folder must not.  Bad input is one :class:`OptionsError` line.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise OptionsError(f"new: the project name must be a Python identifier like MyProject, got {name!r}")
    parent = Path(parent)
    if not parent.is_dir():
        raise OptionsError(f"new: {parent} is not a dir; create it first or pass another --dir")
    root = parent / f"{name.lower()}.bootstrap.pytorch"
    if root.exists() or root.is_symlink():
        raise OptionsError(f"new: {root} already exists; choose another NAME or --dir (nothing is overwritten)")
    files = render(name)
    if native:
        from bootstrap_repro.migrate._project import migrate_sources

        migration = migrate_sources(files)
        files = {**files, **{rel: new for rel, (_, new) in migration.changes.items()}}
    root.mkdir()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
