"""A real bootstrap.pytorch 0.0.13 plugin project, written as its users wrote them, run by bootstrap-repro.

The project (``myproject``, written into ``tmp_path``) uses only the seed's API: a ``Dataset`` subclass
with the seed's constructor and collate transforms, reading data files of its own; network, criterion
and metric factories (``factory(engine)``, ``factory(engine, mode)``); a metric that registers
``<mode>_on_end_epoch`` hooks and logs with ``Logger()``; an ``Engine`` subclass (``engine.import``)
that overrides ``hook``, ``train`` and ``eval`` to count every hook it sees; options in the seed's
layout (``__include__: abstract.yaml``, ``misc.cuda``, ``views: {name, items}``, a ``StepLR``).
It trains, resumes, evaluates two splits, is viewed and compared with the CLI (and
``python -m bootstrap.run``), then is migrated with ``bootstrap-repro migrate --write`` and trains to
the same ``logs.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bootstrap_repro.errors import OptionsReadOnlyError
from bootstrap_repro.logger import Logger as NativeLogger
from bootstrap_repro.migrate import migrate_sources
from bootstrap_repro.models import BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss

from conftest import REPO

PROJECT: dict[str, str] = {
    "myproject/__init__.py": "",
    "myproject/datasets/__init__.py": "",
    "myproject/datasets/mydataset.py": '''\
        import os
        import torch
        from bootstrap.datasets.dataset import Dataset
        from bootstrap.datasets import transforms as bootstrap_tf


        class MyDataset(Dataset):

            def __init__(self, dir_data='data/myproject', split='train', batch_size=4, shuffle=False,
                         pin_memory=False, nb_threads=4):
                super(MyDataset, self).__init__(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)
                path = os.path.join(self.dir_data, '{}.pth'.format(self.split))
                content = torch.load(path)
                self.data = content['data']
                self.class_id = content['class_id']
                self.nb_classes = int(content['nb_classes'])
                self.dim = self.data.size(1)
                # the usual collate function for bootstrap (as mnist.bootstrap.pytorch sets it)
                self.collate_fn = bootstrap_tf.Compose([
                    bootstrap_tf.ListDictsToDictLists(),
                    bootstrap_tf.StackTensors()
                ])

            def __getitem__(self, index):
                item = {}
                item['index'] = index
                item['data'] = self.data[index]
                item['class_id'] = torch.LongTensor([self.class_id[index]])
                return item

            def __len__(self):
                return self.data.size(0)
        ''',
    "myproject/datasets/factory.py": '''\
        from bootstrap.lib.options import Options
        from bootstrap.lib.logger import Logger
        from .mydataset import MyDataset


        def factory(engine=None):
            Logger()('Creating myproject dataset...')
            dataset = {}

            if Options()['dataset']['name'] == 'mydata':
                if Options()['dataset']['train_split']:
                    dataset['train'] = factory_split(Options()['dataset']['train_split'])

                if Options()['dataset']['eval_split']:
                    dataset['eval'] = factory_split(Options()['dataset']['eval_split'])
            else:
                raise ValueError()

            return dataset


        def factory_split(split):
            shuffle = ('train' in split)
            dataset = MyDataset(
                dir_data=Options()['dataset.dir'],
                split=split,
                batch_size=Options()['dataset']['batch_size'],
                shuffle=shuffle,
                pin_memory=Options()['misc']['cuda'],
                nb_threads=Options()['dataset']['nb_threads'])
            return dataset
        ''',
    "myproject/models/__init__.py": "",
    "myproject/models/networks/__init__.py": "",
    "myproject/models/networks/mynet.py": '''\
        import torch.nn as nn
        import torch.nn.functional as F


        class MyNet(nn.Module):

            def __init__(self, dim_in, dim_hidden, nb_classes):
                super(MyNet, self).__init__()
                self.fc1 = nn.Linear(dim_in, dim_hidden)
                self.fc2 = nn.Linear(dim_hidden, nb_classes)

            def forward(self, x):
                return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)
        ''',
    "myproject/models/networks/factory.py": '''\
        import bootstrap.lib.utils as utils
        from bootstrap.lib.options import Options
        from bootstrap.lib.logger import Logger
        from bootstrap.models.networks.data_parallel import DataParallel

        from .mynet import MyNet


        def factory(engine=None):
            Logger()('Creating myproject network...')

            if Options()['model']['network']['name'] == 'mynet':
                # the sizes come from the dataset the engine holds
                split = 'train' if 'train' in engine.dataset else 'eval'
                network = MyNet(
                    dim_in=engine.dataset[split].dim,
                    dim_hidden=Options()['model']['network']['dim_hidden'],
                    nb_classes=engine.dataset[split].nb_classes)

                if Options()['misc']['cuda'] and len(utils.available_gpu_ids()) >= 2:
                    network = DataParallel(network)
            else:
                raise ValueError()

            return network
        ''',
    "myproject/models/criterions/__init__.py": "",
    "myproject/models/criterions/mynll.py": '''\
        import torch.nn as nn


        class MyNLLLoss(nn.Module):

            def __init__(self):
                super(MyNLLLoss, self).__init__()
                self.loss = nn.NLLLoss()

            def forward(self, net_out, batch):
                out = {}
                out['loss'] = self.loss(net_out, batch['class_id'].squeeze(1))
                return out
        ''',
    "myproject/models/criterions/factory.py": '''\
        from bootstrap.lib.options import Options
        from bootstrap.lib.logger import Logger
        from .mynll import MyNLLLoss


        def factory(engine=None, mode=None):
            Logger()('Creating myproject criterion for {} mode...'.format(mode))

            if Options()['model']['criterion']['name'] == 'mynll':
                criterion = MyNLLLoss()
            else:
                raise ValueError()

            return criterion
        ''',
    "myproject/models/metrics/__init__.py": "",
    "myproject/models/metrics/mymetric.py": '''\
        import torch.nn as nn
        from bootstrap.lib.logger import Logger
        from bootstrap.models.metrics.accuracy import accuracy


        class MyAccuracy(nn.Module):
            """accuracy_top<k> per batch; at the end of each epoch of its mode, the accuracy over all items."""

            def __init__(self, engine=None, mode='train', topk=[1, 5]):
                super(MyAccuracy, self).__init__()
                self.mode = mode
                self.topk = topk
                self.nb_end_epoch = 0
                self.reset()
                if engine:
                    engine.register_hook('{}_on_start_epoch'.format(mode), self.reset)
                    engine.register_hook(f'{mode}_on_end_epoch', self.calculate_something)

            def reset(self):
                self.nb_items = 0
                self.nb_correct = 0

            def __call__(self, cri_out, net_out, batch):
                out = {}
                acc_out = accuracy(net_out.data.cpu(),
                                   batch['class_id'].data.cpu(),
                                   topk=self.topk)
                for i, k in enumerate(self.topk):
                    out['accuracy_top{}'.format(k)] = acc_out[i]
                pred = net_out.data.cpu().max(1)[1]
                self.nb_correct += int((pred == batch['class_id'].data.cpu().view(-1)).sum())
                self.nb_items += len(batch['index'])
                return out

            def calculate_something(self):
                self.nb_end_epoch += 1
                value = 100.0 * self.nb_correct / self.nb_items
                Logger()('{}: {} items, {} end of epoch'.format(self.mode, self.nb_items, self.nb_end_epoch))
                Logger().log_value(f'{self.mode}_epoch.my_metric', value, should_print=True)
                Logger().log_value('{}_epoch.nb_end_epoch'.format(self.mode), self.nb_end_epoch,
                                   should_print=True)
        ''',
    "myproject/models/metrics/factory.py": '''\
        from bootstrap.lib.options import Options
        from bootstrap.lib.logger import Logger
        from .mymetric import MyAccuracy


        def factory(engine=None, mode=None):
            Logger()('Creating myproject metric for {} mode...'.format(mode))

            if Options()['model']['metric']['name'] == 'myaccuracy':
                metric = MyAccuracy(engine, mode=mode, topk=Options()['model']['metric']['topk'])
            else:
                raise ValueError()

            return metric
        ''',
    "myproject/engines/__init__.py": "",
    "myproject/engines/counting.py": '''\
        import collections
        import json
        import os
        import statistics

        from bootstrap.engines.engine import Engine
        from bootstrap.lib.options import Options
        from bootstrap.lib.logger import Logger


        class CountingEngine(Engine):
            """Counts every hook it sees; writes the counts next to the logs."""

            def __init__(self):
                super(CountingEngine, self).__init__()
                self.seen = collections.OrderedDict()
                self.register_hook('train_on_end_epoch', self.log_mean_batch_loss)
                self.register_hook('eval_on_end_epoch', self.log_best_loss)

            def log_mean_batch_loss(self):
                # the mean of this epoch's batch losses, from the values logged so far
                nb_batches = len(self.dataset['train'].make_batch_loader())
                losses = Logger().values['train_batch.loss'][-nb_batches:]
                Logger().log_value('train_epoch.mean_batch_loss', statistics.mean(losses), should_print=True)

            def log_best_loss(self):
                # every eval loss of the experiment so far (a resumed run's earlier epochs included)
                losses = Logger().values['eval_epoch.loss']
                Logger().log_value('eval_epoch.best_loss', min(losses), should_print=True)

            def hook(self, name):
                self.seen[name] = self.seen.get(name, 0) + 1
                super(CountingEngine, self).hook(name)

            def train(self):
                super(CountingEngine, self).train()
                self.dump()

            def eval(self):
                super(CountingEngine, self).eval()
                self.dump()

            def dump(self):
                if Options()['dataset']['train_split']:
                    name = 'hooks'
                else:
                    name = 'hooks_eval_{}'.format(Options()['dataset']['eval_split'])
                path = os.path.join(Options()['exp']['dir'], '{}.json'.format(name))
                with open(path, 'w') as handle:
                    json.dump(self.seen, handle)
                Logger()('{} hooks seen'.format(sum(self.seen.values())))
        ''',
    "myproject/engines/factory.py": '''\
        from bootstrap.lib.logger import Logger
        from .counting import CountingEngine


        def factory():
            Logger()('Creating counting engine...')
            return CountingEngine()
        ''',
    "myproject/options/abstract.yaml": '''\
        exp:
          dir: logs/myproject/abstract
          resume: # last, best_[...], or empty (from scratch)
        dataset:
          import: myproject.datasets.factory
          name: mydata
          dir: data/myproject
          train_split: train
          eval_split: val
          nb_threads: 0
          batch_size: 16
        model:
          name: simple
          network:
            import: myproject.models.networks.factory
            name: mynet
            dim_hidden: 16
          criterion:
            import: myproject.models.criterions.factory
            name: mynll
          metric:
            import: myproject.models.metrics.factory
            name: myaccuracy
            topk: [1, 2]
        optimizer:
          name: sgd
          lr: 0.1
          momentum: 0.9
        engine:
          name: default
          debug: False
          nb_epochs: 2
          print_freq: 2
          saving_criteria:
          - loss:min          # save when new_best < best
        misc:
          cuda: False
          seed: 1337
        views:
          name: plotly
          items:
          - logs:train_epoch.loss+logs:eval_epoch.loss
          - logs:train_batch.loss
          - logs:train_epoch.accuracy_top1+logs:eval_epoch.accuracy_top1
        ''',
    "myproject/options/myproject.yaml": '''\
        __include__: abstract.yaml
        exp:
          dir: logs/myproject/sgd
        engine:
          import: myproject.engines.factory
          saving_criteria:
          - accuracy_top1:max # save when new_best > best
          - loss:min          # save when new_best < best
        optimizer:
          lr_scheduler:
            name: StepLR
            step_size: 1
            gamma: 0.5
        views:
          name: plotly
          items:
          - logs:train_epoch.loss+logs:eval_epoch.loss
          - logs:train_epoch.accuracy_top1+logs:eval_epoch.accuracy_top1
          - logs:train_epoch.my_metric+logs:eval_epoch.my_metric
          - logs:train_epoch.lr
        ''',
}

#: Items per split of the data files the test writes (batch size 16: 3, 2 and 2 batches).
SPLITS = {"train": 48, "val": 32, "test": 24}


def write_project(root: Path) -> Path:
    """The project's files and its data (``data/myproject/<split>.pth``: 2 classes of points in 8 dims)."""
    for rel, text in PROJECT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "data" / "myproject").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for split, n in SPLITS.items():
        class_id = torch.randint(0, 2, (n,), generator=generator)
        data = torch.randn(n, 8, generator=generator) + class_id[:, None].float()
        torch.save({"data": data, "class_id": class_id, "nb_classes": 2}, root / "data" / "myproject" / f"{split}.pth")
    return root


def run(root: Path, *argv: str, module: str = "bootstrap_repro") -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGV`` from the project root, with the project importable (as its users ran it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", module, *argv], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{module} {' '.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "warning" not in r.stderr.lower(), r.stderr  # nothing to fix in a seed project that runs
    return r


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def best_epochs(values: list[float], mode: str) -> list[int]:
    """The epochs at which a saving criterion saves ``ckpt_best_*`` (bootstrap-repro: the first value is a best)."""
    out: list[int] = []
    for epoch, value in enumerate(values):
        if not out or (value < values[out[-1]] if mode == "min" else value > values[out[-1]]):
            out.append(epoch)
    return out


def ranked(out: str) -> list[tuple[str, str, str]]:
    """The rows of ``compare``'s tables: (experiment, epoch, value)."""
    return [tuple(line.split()[1:4]) for line in out.splitlines() if line.strip()[:1].isdigit()]


#: What the CountingEngine sees in one epoch of train then eval (3 train batches, 2 eval batches,
#: print_freq 2: train prints at batches 0 and 2, eval at batch 0).
TRAIN_EPOCH_HOOKS = {"train_on_start_epoch": 1, "train_on_start_batch": 3, "train_on_forward": 3,
                     "train_on_backward": 3, "train_on_update": 3, "train_on_print": 2, "train_on_end_batch": 3,
                     "train_on_end_epoch": 1, "train_on_flush": 1}
EVAL_EPOCH_HOOKS = {"eval_on_start_epoch": 1, "eval_on_start_batch": 2, "eval_on_forward": 2, "eval_on_print": 1,
                    "eval_on_end_batch": 2, "eval_on_end_epoch": 1, "eval_on_flush": 1}
EPOCH_KEYS = {"epoch", "loss", "accuracy_top1", "accuracy_top2", "my_metric", "nb_end_epoch"}


def times(hooks: dict[str, int], n: int) -> dict[str, int]:
    return {name: count * n for name, count in hooks.items()}


@pytest.fixture(scope="module")
def seed_project(tmp_path_factory) -> tuple[Path, bytes, bytes]:
    """The project, trained once for 2 epochs: (root, logs.json, hooks.json) of that training."""
    root = write_project(tmp_path_factory.mktemp("seed") / "myproject.bootstrap.pytorch")
    run(root, "run", "-o", "myproject/options/myproject.yaml")
    exp = root / "logs" / "myproject" / "sgd"
    return root, (exp / "logs.json").read_bytes(), (exp / "hooks.json").read_bytes()


@pytest.mark.slow
def test_seed_project_trains_resumes_evaluates_views_and_compares(seed_project):
    root, first_logs, _ = seed_project
    exp = root / "logs" / "myproject" / "sgd"

    # ---- train (2 epochs): logs.json, checkpoints, the hooks the engine subclass saw
    logs = json.loads(first_logs)
    assert set(logs) == ({f"train_batch.{k}" for k in ("loss", "accuracy_top1", "accuracy_top2")}
                         | {f"eval_batch.{k}" for k in ("loss", "accuracy_top1", "accuracy_top2")}
                         | {f"train_epoch.{k}" for k in EPOCH_KEYS | {"lr", "nb_nan_skipped", "mean_batch_loss"}}
                         | {f"eval_epoch.{k}" for k in EPOCH_KEYS | {"best_loss"}})
    for key, values in logs.items():
        assert len(values) == {"train_batch": 6, "eval_batch": 4}.get(key.split(".")[0], 2), key
    assert logs["train_epoch.epoch"] == logs["eval_epoch.epoch"] == [0, 1]
    assert logs["train_epoch.lr"] == [0.1, 0.05]  # StepLR(step_size=1, gamma=0.5), stepped after each epoch
    # the metric's hooks: one instance per mode, each called at the end of each epoch of its mode
    assert logs["train_epoch.nb_end_epoch"] == logs["eval_epoch.nb_end_epoch"] == [1, 2]
    for mode in ("train", "eval"):  # its own count of the items = the batch-size-weighted epoch mean
        assert logs[f"{mode}_epoch.my_metric"] == pytest.approx(logs[f"{mode}_epoch.accuracy_top1"])
    assert logs["eval_epoch.best_loss"] == [min(logs["eval_epoch.loss"][: i + 1]) for i in range(2)]
    assert logs["train_epoch.mean_batch_loss"] == pytest.approx(logs["train_epoch.loss"])  # 3 batches of 16
    assert sorted(p.name for p in exp.glob("ckpt_*")) == sorted(
        f"ckpt_{name}_{part}.pth.tar" for name in ("last", "best_accuracy_top1", "best_loss")
        for part in ("engine", "model", "optimizer"))
    nb_best = (len(best_epochs(logs["eval_epoch.accuracy_top1"], "max"))
               + len(best_epochs(logs["eval_epoch.loss"], "min")))
    assert read_json(exp / "hooks.json") == {
        "train_on_start": 1, **times(TRAIN_EPOCH_HOOKS, 2), **times(EVAL_EPOCH_HOOKS, 2),
        "engine_on_checkpoint": 2 + nb_best, "engine_on_end_epoch": 2, "train_on_end": 1}
    engine_state = torch.load(exp / "ckpt_last_engine.pth.tar", weights_only=True)
    assert engine_state["epoch"] == 2 and set(engine_state["best_out"]) == {"accuracy_top1", "loss"}

    # ---- resume for a third epoch
    run(root, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "3")
    logs = read_json(exp / "logs.json")
    assert {k: v[:2] for k, v in logs.items() if "_epoch." in k} == {
        k: v for k, v in json.loads(first_logs).items() if "_epoch." in k}
    assert logs["train_epoch.epoch"] == logs["eval_epoch.epoch"] == [0, 1, 2]
    assert logs["train_epoch.lr"] == [0.1, 0.05, 0.025]
    assert len(logs["train_batch.loss"]) == 9 and len(logs["eval_batch.loss"]) == 6
    assert logs["train_epoch.nb_end_epoch"] == logs["eval_epoch.nb_end_epoch"] == [1, 2, 1]  # new instances
    assert logs["eval_epoch.best_loss"][2] == min(logs["eval_epoch.loss"])  # Logger().values held the 2 first
    assert read_json(exp / "hooks.json") == {
        "engine_on_resume": 1, "train_on_start": 1, **TRAIN_EPOCH_HOOKS, **EVAL_EPOCH_HOOKS,
        "engine_on_checkpoint": 1 + sum(e == 2 for c, m in (("accuracy_top1", "max"), ("loss", "min"))
                                        for e in best_epochs(logs[f"eval_epoch.{c}"], m)),
        "engine_on_end_epoch": 1, "train_on_end": 1}
    trained = {p.name: p.read_bytes() for p in exp.iterdir() if p.name.startswith(("ckpt_", "logs.", "options."))}

    # ---- evaluate the best checkpoint on two splits: bootstrap-repro's flags, then the seed's bare flag
    best = best_epochs(logs["eval_epoch.accuracy_top1"], "max")[-1]
    run(root, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "best_accuracy_top1",
        "--dataset.train_split", "", "--dataset.eval_split", "val")
    run(root, "-o", str(exp / "options.yaml"), "--exp.resume", "best_accuracy_top1",
        "--dataset.train_split", "--dataset.eval_split", "test", module="bootstrap.run")
    assert {p.name: p.read_bytes() for p in exp.iterdir() if p.name in trained} == trained  # left alone
    for split, nb_batches in (("val", 2), ("test", 2)):
        ev = read_json(exp / f"logs_eval_{split}.json")
        assert set(ev) == ({f"eval_batch.{k}" for k in ("loss", "accuracy_top1", "accuracy_top2")}
                           | {f"eval_epoch.{k}" for k in EPOCH_KEYS | {"best_loss"}}), split
        assert ev["eval_epoch.epoch"] == [best] and ev["eval_epoch.nb_end_epoch"] == [1]
        assert len(ev["eval_batch.loss"]) == nb_batches
        assert ev["eval_epoch.my_metric"] == pytest.approx(ev["eval_epoch.accuracy_top1"])
        assert (exp / f"options_eval_{split}.yaml").is_file() and (exp / f"logs_eval_{split}.txt").is_file()
        assert read_json(exp / f"hooks_eval_{split}.json") == {
            "engine_on_resume": 1, "eval_on_start": 1, **EVAL_EPOCH_HOOKS, "eval_on_end": 1}
    # the same checkpoint on the same split gives what the training logged at that epoch, to the bit
    assert read_json(exp / "logs_eval_val.json")["eval_epoch.loss"] == [logs["eval_epoch.loss"][best]]

    # ---- view: the curves of the views items
    (exp / "view.html").unlink()
    run(root, "view", str(exp))
    html = (exp / "view.html").read_text()
    data = json.loads(html.split('<script type="application/json" id="view-data">', 1)[1].split("</script>", 1)[0])
    curves = {trace["name"]: trace["y"] for subplot in data["subplots"] for trace in subplot["traces"]}
    assert set(curves) == {f"{m}_epoch.{k}" for m in ("train", "eval") for k in ("loss", "accuracy_top1", "my_metric")
                           } | {"train_epoch.lr"}
    for name, y in curves.items():
        assert y == pytest.approx(logs[name], rel=1e-6), name

    # ---- a second experiment, the seed's way (python -m bootstrap.run), with the seed's logger-engine criteria
    other = root / "logs" / "myproject" / "lr05"
    run(root, "-o", "myproject/options/myproject.yaml", "--exp.dir", str(other), "--optimizer.lr", "0.05",
        "--engine.saving_criteria", "eval_epoch.accuracy_top1:max", "eval_epoch.loss:min", module="bootstrap.run")
    assert {p.name for p in other.glob("ckpt_best_*_model.pth.tar")} == {
        "ckpt_best_eval_epoch.accuracy_top1_model.pth.tar", "ckpt_best_eval_epoch.loss_model.pth.tar"}

    # ---- compare the two: the seed's command and arguments, the brief two-word form, bootstrap-repro's form
    def expected(key: str, mode: str) -> list[tuple[str, str, str]]:
        rows = []
        for d in (exp, other):
            values = read_json(d / "logs.json")[f"eval_epoch.{key}"]
            epoch = best_epochs(values, mode)[-1]
            rows.append((d, epoch, values[epoch]))
        rows.sort(key=lambda row: row[2], reverse=mode == "max")
        return [(str(d.relative_to(root)), str(e), f"{v:g}") for d, e, v in rows]

    rel = [str(exp.relative_to(root)), str(other.relative_to(root))]
    seed_form = run(root, "-d", *rel, "-m", "logs", "eval_epoch.accuracy_top1", "max",
                    "-m", "logs", "eval_epoch.loss", "min", module="bootstrap.compare").stdout
    assert ranked(seed_form) == expected("accuracy_top1", "max") + expected("loss", "min")
    native_form = run(root, "compare", *rel, "-m", "eval_epoch.accuracy_top1:max", "-m", "eval_epoch.loss:min").stdout
    assert native_form == seed_form
    short = run(root, "compare", "-d", *rel, "-m", "eval_epoch.accuracy_top1", "max").stdout
    assert ranked(short) == expected("accuracy_top1", "max")


@pytest.mark.slow
def test_migrated_seed_project_gives_the_same_logs_json(seed_project, tmp_path):
    seed_root, first_logs, first_hooks = seed_project
    root = tmp_path / "native"
    shutil.copytree(seed_root, root, ignore=shutil.ignore_patterns("logs", "__pycache__"))
    r = run(root, "migrate", str(root), "--write")
    assert r.stderr.splitlines()[-1] == f"migrate: 8 files rewritten in {root}"
    assert ("note: myproject/engines/counting.py:8: left as it is: `from bootstrap.lib.logger import Logger`: "
            "Logger().values is the seed's API only (line 28)") in r.stderr.splitlines()
    assert run(root, "migrate", str(root)).stderr.splitlines()[-1] == f"migrate: nothing to change in {root}"
    left = sorted(line.strip() for p in root.rglob("*.py") for line in p.read_text().splitlines()
                  if "import" in line and "bootstrap." in line)
    assert left == [  # what bootstrap-repro has no equivalent for: served by the compatibility layer
        "from bootstrap.datasets import transforms as bootstrap_tf",
        "from bootstrap.lib.logger import Logger",  # CountingEngine reads Logger().values: the seed's (numbers)
        "from bootstrap.models.metrics.accuracy import accuracy",
        "from bootstrap.models.networks.data_parallel import DataParallel",
        "import bootstrap.lib.utils as utils"]
    run(root, "run", "-o", "myproject/options/myproject.yaml")
    exp = root / "logs" / "myproject" / "sgd"
    assert (exp / "logs.json").read_bytes() == first_logs
    assert (exp / "hooks.json").read_bytes() == first_hooks


# ----------------------------------------------------------------------------- what the project needed, in process
def test_the_seeds_accuracy_metric_and_loss_modules():
    from bootstrap.models.criterions.bce import BCEWithLogitsLoss as SeedBCE
    from bootstrap.models.criterions.cross_entropy import CrossEntropyLoss as SeedCrossEntropy
    from bootstrap.models.criterions.nll import NLLLoss as SeedNLL
    from bootstrap.models.metrics.accuracy import Accuracy, accuracy

    scores = torch.tensor([[0.1, 0.7, 0.2], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5], [0.35, 0.25, 0.4]])
    class_id = torch.tensor([[1], [2], [1], [1]])  # the seed's [B, 1] targets
    top1, top2 = accuracy(scores, class_id, topk=[1, 2])
    assert (float(top1), float(top2)) == (25.0, 75.0)
    assert float(accuracy(scores, class_id, topk=[1], ignore_index=2)[0]) == pytest.approx(100 / 3)
    out = Accuracy(topk=[1, 2])(None, scores, {"class_id": class_id})
    assert {k: float(v) for k, v in out.items()} == {"accuracy_top1": 25.0, "accuracy_top2": 75.0}
    assert (SeedNLL, SeedCrossEntropy, SeedBCE) == (NLLLoss, CrossEntropyLoss, BCEWithLogitsLoss)
    migrated = migrate_sources({"m.py": "from bootstrap.models.criterions.nll import NLLLoss\n"})
    assert migrated.changes["m.py"][1] == "from bootstrap_repro.models import NLLLoss\n"


def test_logger_values_hold_numbers_as_the_seeds(tmp_path):
    from bootstrap.lib.logger import Logger

    native = NativeLogger(tmp_path, echo=False, activate=False)
    with native.activate():
        native.log_value("train_batch.loss", torch.tensor(0.5))  # what the engine logs per batch
        Logger().log_value("train_batch.loss", 0.25)
        values = Logger().values["train_batch.loss"]
    assert values == [0.5, 0.25] and [type(v) for v in values] == [float, float]


def test_a_write_to_the_running_options_names_the_key(tiny_options):
    from bootstrap.lib.options import Options

    opt = tiny_options().freeze()
    with opt.activate():
        for write in (lambda: Options()["model"]["network"].__setitem__("nb_classes", 3),
                      lambda: Options().__setitem__("model.network.nb_classes", 3)):
            with pytest.raises(OptionsReadOnlyError, match=re.escape(
                    "options are read-only once the run has started (a write to model.network.nb_classes); "
                    "set it in the options file or with --model.network.nb_classes VALUE")):
                write()
