"""Inputs outside git: every one a run reads is in its key or its recorded inputs; rerun restores or refuses.

A researcher's real setup, in temporary dirs: their own git repo whose plugin imports a helper library
from ``PYTHONPATH`` (outside the repo), a plugin installed in a site-packages dir, a git-ignored
module, code in a git submodule, reads git-ignored data at a cwd-relative path, an environment
variable and ``hash()`` (``PYTHONHASHSEED``), and may get a hooks module through
``$BOOTSTRAP_REPRO_HOOKS``.  For each input changed in turn: the next run trains (no stale cache
hit), a re-run of the recorded experiment restores the input (exit 0, every value and tensor
identical) or refuses naming it, and once the input is back the run is a cache hit again.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, cli
from repro_helpers import git, tiny_tree

from bootstrap_repro.options import merge

pytestmark = pytest.mark.slow

PLUGIN = textwrap.dedent("""
    import os

    import torch

    import helper_lib           # a helper library on PYTHONPATH, outside the repo
    import ignored_mod          # a git-ignored module next to this one
    import sitepkg_plugin       # installed in a site-packages dir
    from subpkg import submod   # code in a git submodule (libs/sub)


    class Net(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
            self.shift = shift

        def forward(self, x):
            return torch.log_softmax(self.body(x) * self.shift, dim=-1)


    def factory(engine):
        with open(os.path.join("data", "scale.txt")) as f:  # git-ignored data, relative to the cwd
            data_scale = float(f.read())
        shift = (helper_lib.SCALE * ignored_mod.SCALE * sitepkg_plugin.SCALE * submod.SCALE * data_scale
                 * float(os.environ.get("NET_SHIFT", "1")) * (1 + (hash("abc") % 7) / 10))
        return Net(shift)
""")

STOP_HOOK = textwrap.dedent("""
    def register(engine):
        engine.register_hook("engine_on_end_epoch", lambda: engine.request_stop("early stop"))
""")

SITE_SETUP = textwrap.dedent("""
    from setuptools import setup
    setup(name="sitepkg-plugin", version="1.0", py_modules=["sitepkg_plugin"])
""")


@dataclass
class Project:
    root: Path
    tmp: Path
    env: dict[str, str]
    exp: Path  #: the recorded experiment (trained once, before any change)
    cache: Path
    sub_commits: tuple[str, str]
    n: Iterator[int]

    def run(self, *argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
        exp = self.tmp / f"e{next(self.n)}"
        r = cli("run", "-o", "configs/tiny.yaml", "--exp.dir", str(exp), *argv, cwd=self.root,
                env={**self.env, **(env or {})})
        assert r.returncode == 0, r.stdout + r.stderr
        return r, exp

    def rerun(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        new = self.tmp / f"r{next(self.n)}"
        return cli("rerun", str(self.exp), "--exp.dir", str(new), *argv, cwd=self.tmp,
                   env={**self.env, **(env or {})})


def _pip_install(pkg: Path, site: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "--upgrade", "--target", str(site), str(pkg)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    tmp = tmp_path_factory.mktemp("matrix")
    # a submodule repo with two commits
    sub_src = tmp / "subsrc"
    (sub_src / "subpkg").mkdir(parents=True)
    git(sub_src, "init", "-q", "-b", "main")
    (sub_src / "subpkg" / "__init__.py").write_text("")
    (sub_src / "subpkg" / "submod.py").write_text("SCALE = 1.0\n")
    git(sub_src, "add", "-A")
    git(sub_src, "commit", "-q", "-m", "one")
    first = git(sub_src, "rev-parse", "HEAD").strip()
    (sub_src / "subpkg" / "submod.py").write_text("SCALE = 1.5\n")
    git(sub_src, "commit", "-qam", "two")
    second = git(sub_src, "rev-parse", "HEAD").strip()
    # the project repo
    root = tmp / "repo"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "src" / "netplug.py").write_text(PLUGIN)
    (root / "src" / "stophook.py").write_text(STOP_HOOK)
    (root / "src" / "ignored_mod.py").write_text("SCALE = 1.0\n")
    (root / "data").mkdir()
    (root / "data" / "scale.txt").write_text("1.0\n")
    (root / ".gitignore").write_text("data/\nsrc/ignored_mod.py\n")
    (root / "configs").mkdir()
    tree = merge(tiny_tree(tmp / "unused"), {"model": {"network": {"import": "netplug"}}})
    (root / "configs" / "tiny.yaml").write_text(json.dumps(tree))
    (root / ".env").write_text("API_TOKEN=tok-never-in-records-7f3e\n")  # untracked, not ignored: a secret
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub_src), "libs/sub")
    git(root / "libs" / "sub", "checkout", "-q", first)
    git(root, "add", "-A", ":!.env")
    git(root, "commit", "-q", "-m", "init")
    # outside the repo: a helper library on PYTHONPATH and an installed plugin
    helper = tmp / "helpers"
    helper.mkdir()
    (helper / "helper_lib.py").write_text("SCALE = 1.0\n")
    pkg = tmp / "sitepkg"
    pkg.mkdir()
    (pkg / "setup.py").write_text(SITE_SETUP)
    (pkg / "sitepkg_plugin.py").write_text("SCALE = 1.0\n")
    userbase = tmp / "userbase"
    site = userbase / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    _pip_install(pkg, site)
    cache = tmp / "cache"
    env = {
        "PYTHONPATH": os.pathsep.join(map(str, [REPO, root / "src", root / "libs" / "sub", helper, site])),
        "PYTHONUSERBASE": str(userbase), "PYTHONHASHSEED": "0", "BOOTSTRAP_REPRO_CACHE_DIR": str(cache),
    }
    proj = Project(root, tmp, env, tmp / "e0", cache, (first, second), iter(range(1000)))
    r, exp = proj.run()
    assert exp == proj.exp and "cache hit" not in r.stdout
    return proj


def _site_plugin(p: Project) -> Path:
    return p.tmp / "sitepkg"


# Each change: (name, apply, revert, restored_by_rerun, named_path)
def _edit(path_of: Callable[[Project], Path], new: str) -> tuple[Callable[[Project], None], Callable[[Project], None]]:
    saved: dict[str, str] = {}

    def apply(p: Project) -> None:
        f = path_of(p)
        saved["text"] = f.read_text()
        f.write_text(new)

    def revert(p: Project) -> None:
        path_of(p).write_text(saved["text"])

    return apply, revert


def _reinstall(scale: str) -> Callable[[Project], None]:
    def go(p: Project) -> None:
        (p.tmp / "sitepkg" / "sitepkg_plugin.py").write_text(f"SCALE = {scale}\n")
        _pip_install(p.tmp / "sitepkg", Path(p.env["PYTHONPATH"].split(os.pathsep)[-1]))

    return go


def _sub_checkout(which: int) -> Callable[[Project], None]:
    return lambda p: git(p.root / "libs" / "sub", "checkout", "-q", p.sub_commits[which])


def _set_env(name: str, value: str | None) -> Callable[[Project], None]:
    def go(p: Project) -> None:
        if value is None:
            p.env.pop(name, None)
        else:
            p.env[name] = value

    return go


CHANGES = {
    # name: (apply, revert, restored by rerun?, what the messages name)
    "ignored data": (*_edit(lambda p: p.root / "data" / "scale.txt", "2.0\n"), True, "data/scale.txt"),
    "ignored module": (*_edit(lambda p: p.root / "src" / "ignored_mod.py", "SCALE = 2.0\n"), True,
                       "src/ignored_mod.py"),
    "submodule edit": (*_edit(lambda p: p.root / "libs" / "sub" / "subpkg" / "submod.py", "SCALE = 3.0\n"), True,
                       None),
    "submodule moved": (_sub_checkout(1), _sub_checkout(0), True, None),
    "site-packages reinstall, same version": (_reinstall("2.0"), _reinstall("1.0"), False, "sitepkg_plugin.py"),
    "PYTHONPATH helper": (*_edit(lambda p: p.tmp / "helpers" / "helper_lib.py", "SCALE = 2.0\n"), False,
                          "helpers/helper_lib.py"),
    "env var read by the plugin": (_set_env("NET_SHIFT", "2"), _set_env("NET_SHIFT", None), True, "$NET_SHIFT"),
    "PYTHONHASHSEED": (_set_env("PYTHONHASHSEED", "1"), _set_env("PYTHONHASHSEED", "0"), True, None),
    "hooks module": (_set_env("BOOTSTRAP_REPRO_HOOKS", "stophook"), _set_env("BOOTSTRAP_REPRO_HOOKS", None), True,
                     None),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_changed_input_misses_and_rerun_restores_or_refuses(project, name):
    apply, revert, restorable, named = CHANGES[name]
    apply(project)
    try:
        r, exp = project.run()
        assert "cache hit" not in r.stdout, f"{name}: a stale cache hit"
        if named is not None and not named.startswith("$"):
            assert "computed from other inputs" in r.stdout + r.stderr and named in r.stdout + r.stderr
        logs = json.loads(exp.joinpath("logs.json").read_text())
        original = json.loads(project.exp.joinpath("logs.json").read_text())
        assert logs["train_batch.loss"] != original["train_batch.loss"], f"{name}: the change changes results"
        # rerun of the recorded experiment, the input being changed now
        rr = project.rerun("--verify")
        if restorable:
            assert rr.returncode == 0, rr.stdout + rr.stderr
            assert " values identical (1 logs file), " in rr.stdout and " tensors identical (" in rr.stdout
        else:
            assert rr.returncode == 2, rr.stdout + rr.stderr
            err = rr.stderr.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: rerun: 1 input(s) of {project.exp} are not as recorded: ")
            assert named in err[0] and "pass --allow-changed" in err[0]
            anyway = project.rerun("--verify", "--allow-changed")
            assert anyway.returncode == 1, anyway.stdout + anyway.stderr  # other code: other values
            assert "running anyway (--allow-changed)" in anyway.stderr and named in anyway.stderr
            assert "input differences: segment 0: " in anyway.stdout and named in anyway.stdout
    finally:
        revert(project)
    r, _ = project.run()
    assert "cache hit" in r.stdout, f"{name}: back as it was, the run must hit again\n{r.stdout}{r.stderr}"


def test_inputs_are_recorded_by_kind_and_secrets_never(project):
    rec = json.loads((project.exp / "repro" / "record.json").read_text())
    manifest = json.loads((project.exp / "repro" / "segments" / "0" / "inputs.json").read_text())
    root = str(project.root.resolve())
    kinds = {p.removeprefix(root + "/"): m["kind"] for p, m in {**manifest["modules"], **manifest["files"]}.items()}
    assert kinds["src/netplug.py"] == "repo"
    assert kinds["src/ignored_mod.py"] == "ignored" and kinds["data/scale.txt"] == "ignored"
    assert kinds["libs/sub/subpkg/submod.py"] == "submodule"
    assert kinds[str((project.tmp / "helpers" / "helper_lib.py").resolve())] == "external"
    assert any(k.endswith("site-packages/sitepkg_plugin.py") and v == "installed" for k, v in kinds.items())
    assert manifest["env"]["NET_SHIFT"] is None  # read, unset: a later value is another input
    assert sorted(p.removeprefix(root + "/") for p in manifest["archived"]) == ["data/scale.txt", "src/ignored_mod.py"]
    assert rec["code"]["submodules"][0]["path"] == "libs/sub"
    assert rec["code"]["submodules"][0]["commit"] == project.sub_commits[0]
    assert rec["code"]["excluded_secrets"] == [".env"]
    assert rec["environment"]["env_vars"]["PYTHONHASHSEED"] == "0"
    # the token is nowhere in the experiment dir, the archives included
    for f in project.exp.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if f.name.endswith(".gz"):
                data = gzip.decompress(data)
            assert b"tok-never-in-records" not in data, f
