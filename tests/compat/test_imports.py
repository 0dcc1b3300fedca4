"""The ``bootstrap`` import alias: seed imports resolve in a plain script, a real bootstrap wins, it can be off."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import bootstrap_repro
from bootstrap_repro import _bootstrap_alias

PKG = Path(bootstrap_repro.__file__).resolve().parent

#: Every name of the issue's list, as a seed project imports it.
SEED_IMPORTS = """
from bootstrap.lib.options import Options, OptionsDict
from bootstrap.lib.logger import Logger
from bootstrap.lib.utils import merge_dictionaries
from bootstrap.lib import utils
from bootstrap.datasets.dataset import Dataset, ListDatasets
from bootstrap.datasets import transforms
from bootstrap.datasets.transforms import (Compose, ListDictsToDictLists, StackTensors, PadTensors, CatTensors,
                                           ToCuda, ToCpu, ToVariable, ToDetach, SortByKey)
from bootstrap.models.model import Model, DefaultModel, SimpleModel
from bootstrap.models.networks.data_parallel import DataParallel, DistributedDataParallel
from bootstrap.engines.engine import Engine
from bootstrap.engines.logger import LoggerEngine
from bootstrap import datasets, engines, models
from bootstrap.new import new_project
from bootstrap.run import run, main
"""


def python(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment (site-packages and its .pth files included)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", _bootstrap_alias.ENV_DISABLE)}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def require_pth() -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / "bootstrap_repro_compat.pth"
    if not pth.is_file():
        pytest.fail(f"{pth} is missing: this environment predates it; reinstall the project (pip install -e .)")


def test_seed_imports_resolve_in_a_plain_script(tmp_path):
    require_pth()
    r = python(SEED_IMPORTS + """
import sys
assert Options.__module__ == "bootstrap.lib.options", Options.__module__
assert not [m for m in sys.modules if m.startswith("bootstrap_repro.compat.")], "a second copy was imported"
print(sys.modules["bootstrap"].__bootstrap_repro__)
""", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    assert r.stderr == ""


def test_a_plugin_imported_by_a_plain_script_resolves(tmp_path):
    require_pth()
    (tmp_path / "myplugin.py").write_text(SEED_IMPORTS + "\nNAMES = (Options, Logger, Dataset, DefaultModel, Engine)\n")
    r = python("import sys, myplugin; assert 'bootstrap_repro' not in sys.argv; print(len(myplugin.NAMES))",
               cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "5"


def test_startup_installs_both_finders_and_imports_nothing_heavy(tmp_path):
    require_pth()
    r = python("""
import sys
roles = [getattr(f, "_bootstrap_repro_alias", None) for f in sys.meta_path]
from importlib.machinery import PathFinder
assert roles.index("finder") > sys.meta_path.index(PathFinder), roles
assert roles.index("watcher") < sys.meta_path.index(PathFinder), roles
mine = sorted(m for m in sys.modules if m.startswith("bootstrap"))
heavy = [m for m in ("torch", "yaml", "pydantic") if m in sys.modules]
print(mine, heavy)
""", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['bootstrap_repro', 'bootstrap_repro._bootstrap_alias'] []"


def test_alias_module_imports_only_os_and_sys():
    tree = ast.parse(Path(_bootstrap_alias.__file__).read_text())
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"__future__", "os", "sys"}, top


def test_a_real_bootstrap_wins_with_one_warning(tmp_path):
    real = tmp_path / "site" / "bootstrap"
    (real / "lib").mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    (real / "lib" / "__init__.py").write_text("")
    r = python("""
import importlib, sys
import bootstrap_repro
import bootstrap
assert bootstrap.REAL and not hasattr(bootstrap, "__bootstrap_repro__")
del sys.modules["bootstrap"]
importlib.import_module("bootstrap")              # looked up again: no second warning
try:
    import bootstrap.lib.options                  # the real package has no such module: no mixing
except ModuleNotFoundError as exc:
    print(exc.name)
""", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bootstrap.lib.options"
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bootstrap-repro: warning: `import bootstrap` uses the bootstrap package installed at ")
    assert _bootstrap_alias.ENV_DISABLE in lines[0]


def test_the_env_var_turns_the_alias_off(tmp_path):
    r = python("""
import bootstrap_repro
try:
    import bootstrap
except ModuleNotFoundError:
    print("off")
""", cwd=tmp_path, env={_bootstrap_alias.ENV_DISABLE: "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "off"
    assert r.stderr == ""


def test_a_bare_bootstrap_directory_does_not_shadow_the_layer(tmp_path):
    (tmp_path / "bootstrap").mkdir()  # e.g. a data folder in the working directory: a namespace portion
    r = python("import bootstrap_repro, bootstrap.lib.options as o; print(o.__name__)", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bootstrap.lib.options"
    assert r.stderr == ""


def test_importing_bootstrap_repro_installs_the_alias_without_the_pth(tmp_path):
    code = "import sys; sys.path[:0] = [sys.argv[1]]; import bootstrap_repro, bootstrap.lib; print(bootstrap.__version__)"
    r = subprocess.run([sys.executable, "-S", "-c", code, str(PKG.parent)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0.0.13"


def test_the_layer_refuses_its_file_path_name():
    with pytest.raises(ImportError, match="import it as `bootstrap`"):
        __import__("bootstrap_repro.compat.bootstrap")


def test_install_is_idempotent():
    before = list(sys.meta_path)
    _bootstrap_alias.install()
    _bootstrap_alias.install()
    assert sys.meta_path == before
