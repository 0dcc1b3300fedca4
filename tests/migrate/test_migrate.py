"""``bootstrap-repro migrate``: a bootstrap.pytorch project moved to bootstrap-repro's API gives the same logs.json."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bootstrap_repro.cli import main
from bootstrap_repro.migrate import migrate_sources, plan
from bootstrap_repro.migrate._python import IMPORTS, SEED_ONLY_OPTIONS

from conftest import REPO

#: A small bootstrap.pytorch project: the seed's Dataset constructor, a network of its own, the built-in
#: nll criterion and accuracy metric (its released name in the options), options with ``__include__``.
PROJECT = {
    "blobs/__init__.py": "",
    "blobs/datasets/__init__.py": "",
    "blobs/datasets/blobs.py": '''\
        import torch
        from bootstrap.datasets.dataset import Dataset
        from bootstrap.lib.logger import Logger
        from bootstrap.lib.options import Options


        class Blobs(Dataset):
            """Points around 3 centres (the class id)."""

            def __init__(self, dir_data, split, batch_size=4, shuffle=False, pin_memory=False, nb_threads=0,
                         nb_items=60):
                super(Blobs, self).__init__(dir_data, split, batch_size, shuffle, pin_memory, nb_threads)
                generator = torch.Generator().manual_seed(0 if split == "train" else 1)
                self.class_id = torch.randint(0, 3, (nb_items,), generator=generator)
                self.data = torch.randn(nb_items, 6, generator=generator) + self.class_id[:, None].float()

            def __len__(self):
                return self.data.shape[0]

            def __getitem__(self, index):
                return {"data": self.data[index], "class_id": self.class_id[index]}


        def factory(engine=None):
            opt = Options()["dataset"]
            Logger()("Creating dataset", opt["name"])
            dataset = {}
            if opt.get("train_split", None):
                dataset["train"] = Blobs(opt["dir"], opt["train_split"], opt["batch_size"], True, False,
                                         opt["nb_threads"], nb_items=opt["nb_items"])
            if opt.get("eval_split", None):
                dataset["eval"] = Blobs(opt["dir"], opt["eval_split"], opt["batch_size"], False, False,
                                        opt["nb_threads"], nb_items=opt["nb_items"])
            if engine is not None and "train" in dataset:
                engine.register_hook("train_on_end_epoch", lambda: Logger().log_value(
                    "train_epoch.nb_items", len(dataset["train"]), should_print=True))
            return dataset
        ''',
    "blobs/models/__init__.py": "",
    "blobs/models/networks.py": '''\
        import torch.nn as nn
        import torch.nn.functional as F

        from bootstrap.lib.options import Options


        class Net(nn.Module):

            def __init__(self, dim, hidden, nb_classes):
                super().__init__()
                self.fc1 = nn.Linear(dim, hidden)
                self.fc2 = nn.Linear(hidden, nb_classes)

            def forward(self, batch):
                return F.log_softmax(self.fc2(F.relu(self.fc1(batch["data"]))), dim=1)


        def factory(engine=None):
            opt = Options()["model"]["network"]
            return Net(opt["dim"], opt["hidden"], opt["nb_classes"])
        ''',
    "blobs/tools.py": '''\
        from bootstrap.lib.options import Options
        from bootstrap.lib.utils import set_random_seed


        def show(path):
            set_random_seed(0)
            print(Options(path))  # the seed's singleton: left on the compatibility layer
        ''',
    "blobs/options/abstract.yaml": '''\
        # shared by every experiment
        exp:
          dir: logs/blobs/default
          resume:
        dataset:
          import: blobs.datasets.blobs
          name: blobs
          dir: data/blobs
          train_split: train
          eval_split: val
          nb_items: 60
          batch_size: 16
          nb_threads: 0
        optimizer:
          name: sgd
          lr: 0.05
          momentum: 0.9
        engine:
          name: default
          nb_epochs: 3
          print_freq: 10
        misc:
          cuda: false   # CPU
          seed: 1337
        ''',
    "blobs/options/blobs.yaml": '''\
        __include__: abstract.yaml
        exp:
          dir: logs/blobs/mlp
        model:
          name: default
          network:
            import: blobs.models.networks
            dim: 6
            hidden: 12
            nb_classes: 3
          criterion:
            name: nll
          metric:
            name: accuracy
            topk: [1, 2]
        engine:
          saving_criteria:
          - loss:min
          - accuracy_top1:max  # released name
        view:
        - logs:train_epoch.loss+logs:eval_epoch.loss
        - logs:train_epoch.accuracy_top1+logs:eval_epoch.accuracy_top1
        ''',
}


def write_project(root: Path, files: dict[str, str] = PROJECT) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def run_in(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(project)}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith("BOOTSTRAP_REPRO_CACHE")})
    return subprocess.run([sys.executable, "-m", "bootstrap_repro", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_migrate_prints_a_diff_and_notes_and_writes_nothing(capsys, tmp_path):
    proj = write_project(tmp_path / "proj")
    before = {p: p.read_bytes() for p in proj.rglob("*") if p.is_file()}
    code = main(["migrate", str(proj)])
    out, err = capsys.readouterr()
    assert code == 0
    assert {p: p.read_bytes() for p in proj.rglob("*") if p.is_file()} == before
    assert "--- a/blobs/datasets/blobs.py\n+++ b/blobs/datasets/blobs.py\n" in out
    for line in ("-from bootstrap.datasets.dataset import Dataset", "+from bootstrap_repro.datasets import Dataset",
                 "+from bootstrap_repro.logger import Logger", "+from bootstrap_repro.options import Options",
                 "-  cuda: false   # CPU", "+  device: cpu", "-  - accuracy_top1:max  # released name",
                 "+  - acctop1:max  # released name",
                 "+- logs:train_epoch.acctop1+logs:eval_epoch.acctop1"):
        assert line in out.splitlines(), line
    assert "blobs/tools.py" not in out  # Options(path) is the seed's API: left
    assert ("note: blobs/tools.py:1: left as it is: `from bootstrap.lib.options import Options`: Options is used "
            "other than as Options() inside a function (line 7)") in err.splitlines()
    assert ("note: blobs/tools.py:2: left as it is: `from bootstrap.lib.utils import set_random_seed`: "
            "bootstrap-repro has no equivalent; the compatibility layer keeps it working") in err.splitlines()
    assert err.splitlines()[-1] == f"migrate: 4 files to change; apply with: bootstrap-repro migrate {proj} --write"
    # the diff applies with git apply, as printed
    diff = tmp_path / "m.diff"
    diff.write_text(out)
    r = subprocess.run(["git", "apply", "--check", str(diff)], cwd=proj,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_migrated_project_gives_the_same_logs_json(tmp_path, _test_cache_dir):
    seed = write_project(tmp_path / "seed")
    native = tmp_path / "native"
    shutil.copytree(seed, native)
    assert main(["migrate", str(native), "--write"]) == 0
    assert not [p for p in native.rglob("*.py") if p.name != "tools.py" and "bootstrap." in p.read_text()]
    assert "acctop1:max" in (native / "blobs/options/blobs.yaml").read_text()
    for project in (seed, native):
        r = run_in(project, "run", "-o", "blobs/options/blobs.yaml", "--engine.progress_bar", "false", "--no-cache")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a = (seed / "logs/blobs/mlp/logs.json").read_bytes()
    b = (native / "logs/blobs/mlp/logs.json").read_bytes()
    assert b'"train_epoch.nb_items"' in a and b'"eval_epoch.acctop1"' in a
    assert a == b
    # the same checkpoints, named as each options file spells the criterion
    assert (seed / "logs/blobs/mlp/ckpt_best_accuracy_top1_model.pth.tar").is_file()
    assert (native / "logs/blobs/mlp/ckpt_best_acctop1_model.pth.tar").is_file()
    # a second migration finds nothing to do
    r = run_in(native, "migrate", ".")
    assert r.returncode == 0 and r.stdout == "" and r.stderr.splitlines()[-1] == "migrate: nothing to change in .", r.stderr


def test_write_is_atomic_per_file_and_keeps_modes(tmp_path, capsys):
    proj = write_project(tmp_path / "proj")
    script = proj / "blobs/datasets/blobs.py"
    script.chmod(0o750)
    assert main(["migrate", str(proj), "--write"]) == 0
    assert script.stat().st_mode & 0o777 == 0o750
    assert not list(proj.rglob("*.tmp*")) and "bootstrap_repro.datasets" in script.read_text()
    assert capsys.readouterr().err.splitlines()[-1] == f"migrate: 4 files rewritten in {proj}"


def test_bad_path_is_one_line(capsys, tmp_path):
    code = main(["migrate", str(tmp_path / "nope")])
    _, err = capsys.readouterr()
    assert code == 2 and err == f"error: migrate: {tmp_path / 'nope'} does not exist; pass the project dir (or one .py/.yaml file)\n"


def rewrite(source: str) -> tuple[str, list[str]]:
    m = migrate_sources({"m.py": textwrap.dedent(source)})
    new = m.changes.get("m.py", (None, textwrap.dedent(source)))[1]
    return new, [n.text for n in m.notes]


def test_imports_move_only_when_every_use_is_the_same():
    new, notes = rewrite('''\
        from bootstrap.lib.logger import Logger, LoggedError
        from bootstrap.models.networks.factory import factory
        from bootstrap import engines

        def f():
            Logger()("x", 1)
            Logger().log_value("a", 1, should_print=True)
            engines.factory()
        ''')
    assert new.splitlines()[:4] == [
        "from bootstrap_repro.logger import Logger",
        "from bootstrap.lib.logger import LoggedError",
        "from bootstrap_repro.models import network_factory as factory",
        "from bootstrap_repro import engines",
    ]
    assert notes == ["left as it is: `from bootstrap.lib.logger import LoggedError`: bootstrap-repro has no "
                     "equivalent; the compatibility layer keeps it working"]
    for source, why in [
        ("from bootstrap.lib.logger import Logger\ndef f():\n    Logger()('x', log_level=Logger.ERROR)\n",
         "Logger()(..., log_level=...) is the seed's API only (line 3)"),
        ("from bootstrap.lib.logger import Logger\ndef f():\n    print(Logger.WARNING)\n",
         "Logger is used other than as Logger() inside a function (line 3)"),
        ("from bootstrap.lib.logger import Logger\ndef f():\n    Logger().log_value('a', 1, 3)\n",
         "Logger().log_value(...) with the seed's other arguments (line 3)"),
        ("from bootstrap.lib.options import Options\nopt = Options()\n",
         "Options is used other than as Options() inside a function (line 2)"),
        ("from bootstrap.lib.options import Options\ndef f():\n    o = Options()\n    o.unlock()\n",
         "Options().unlock is the seed's API only (line 4)"),
        ("from bootstrap.datasets.dataset import Dataset\nclass D(Dataset):\n"
         "    def __init__(self):\n        super().__init__(dir_data='x', split='train')\n",
         "D: the dataset's __init__ call is not Dataset(dir_data, split, ...) with positional dir_data and split, "
         "which bootstrap-repro's Dataset reads as the seed's (line 4)"),
        ("from bootstrap.engines.engine import Engine\nclass E(Engine):\n"
         "    def __init__(self, opt):\n        super().__init__(opt)\n",
         "E: Engine.__init__ with arguments (bootstrap.pytorch's Engine took none) (line 4)"),
        ("from bootstrap import engines\nengines.engine.Engine\n", "engines.engine is the seed's API only (line 2)"),
    ]:
        new, notes = rewrite(source)
        assert new == source and notes and notes[0].endswith(why), (source, notes)


def test_the_seed_only_options_attributes_are_all_listed():
    from bootstrap.lib.options import Options as Seed

    from bootstrap_repro.options import Options as Native

    assert {n for n in set(dir(Seed)) - set(dir(Native)) if not n.startswith("_")} <= SEED_ONLY_OPTIONS


def test_each_import_target_exists_and_is_what_the_layer_serves():
    import importlib

    for (module, name), target in IMPORTS.items():
        native = getattr(importlib.import_module(target.module), target.name)
        seed = getattr(importlib.import_module(module), name)
        if target.check is None and not name == "factory":
            assert seed is native, (module, name)
        assert callable(native)


def test_options_renames_are_conservative(tmp_path):
    files = {
        "a.yaml": "model:\n  metric: {name: accuracy}\nengine:\n  saving_criteria: [accuracy_top1:max]\n",
        "b.yaml": "model:\n  metric:\n    import: mine.metric\nengine:\n  saving_criteria: [accuracy_top1:max]\n",
        "c.yaml": "misc: {cuda: true}\n",
        "d.yaml": "misc:\n  seed: 1\n  cuda: true\n",
    }
    m = migrate_sources(files)
    assert m.changes["a.yaml"][1] == "model:\n  metric: {name: accuracy}\nengine:\n  saving_criteria: [acctop1:max]\n"
    assert "b.yaml" not in m.changes and "c.yaml" not in m.changes
    assert m.changes["d.yaml"][1] == "misc:\n  seed: 1\nengine:\n  device: cuda\n"
    texts = [str(n) for n in m.notes]
    assert any(t.startswith("b.yaml:5: left as it is: accuracy_top<k> names a metric of the project's own") for t in texts)
    assert "c.yaml:1: misc.cuda is left: its section is in flow style ({...}); move it by hand" in texts
    # a project whose code reads the option, or that sets engine.device somewhere: misc.cuda stays
    m = migrate_sources({"d.yaml": files["d.yaml"], "x.py": "def f(o):\n    return o['misc']['cuda']\n"})
    assert not m.changes and [str(n) for n in m.notes] == [
        "d.yaml:3: misc.cuda is left: Python code may read it (x.py:2); engine.device: cpu|cuda is bootstrap-repro's name"]
    m = migrate_sources({"d.yaml": files["d.yaml"], "e.yaml": "engine:\n  device: cuda:1\n"})
    assert not m.changes


def test_experiment_dirs_are_not_rewritten(tmp_path):
    proj = write_project(tmp_path / "proj")
    exp = proj / "logs/blobs/mlp"
    exp.mkdir(parents=True)
    (exp / "options.yaml").write_text("misc:\n  cuda: false\n")
    (exp / "logs.json").write_text("{}")
    assert "logs/blobs/mlp/options.yaml" not in plan(proj).changes
