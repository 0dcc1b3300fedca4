"""The wheel and the editable wheel both ship ``bootstrap_repro_compat.pth``, whose line never raises."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PTH = "bootstrap_repro_compat.pth"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of what a build reads (a build writes build/ and *.egg-info next to setup.py)."""
    dest = tmp_path_factory.mktemp("project")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "bootstrap_repro", dest / "bootstrap_repro",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def build(project: Path, hook: str, out: Path) -> zipfile.ZipFile:
    """Call the PEP 517/660 ``hook`` of setuptools (this environment's, no network) and open the wheel."""
    code = f"import sys, setuptools.build_meta as b; print(b.{hook}(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return zipfile.ZipFile(out / r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_wheels_ship_the_pth_at_the_root(project, tmp_path, hook):
    wheel = build(project, hook, tmp_path)
    assert PTH in wheel.namelist()
    line = wheel.read(PTH).decode()
    assert "import bootstrap_repro._bootstrap_alias" in line and line.startswith("import ")
    if hook == "build_wheel":
        assert "bootstrap_repro/compat/bootstrap/lib/options.py" in wheel.namelist()


def test_the_pth_line_never_raises(tmp_path):
    setup_py = ast.parse((REPO / "setup.py").read_text())
    PTH_TEXT = next(ast.literal_eval(n.value) for n in setup_py.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", None) == "PTH_TEXT")
    site = tmp_path / "site"
    site.mkdir()
    (site / PTH).write_text(PTH_TEXT)
    # bootstrap_repro is not importable here (-S, -I): site.addsitedir runs the line, which must stay silent
    code = "import site, sys; site.addsitedir(sys.argv[1]); print('ok')"
    r = subprocess.run([sys.executable, "-S", "-I", "-c", code, str(site)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok" and r.stderr == "", r.stderr
