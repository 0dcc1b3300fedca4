"""Architecture rules: a module imports only from its own layer or below; light modules stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "bootstrap_repro"

#: Lowest layer first (DESIGN.md section 2).
LAYERS: list[set[str]] = [
    {"errors", "fileio", "_current", "_bootstrap_alias", "_metric_names", "_lingering"},
    {"options", "logger", "plugins", "_schema"},
    {"engines", "datasets", "models", "optimizers", "views"},
    {"record"},
    {"run"},
    {"runtimes"},
    {"sweep"},
    {"migrate"},  # rewrites a seed project's files (and `new`'s template); no torch
    {"cli", "__main__"},
    {"compat"},  # bootstrap_repro/compat/bootstrap: the `bootstrap` package of seed projects (its run calls the cli)
]


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"bootstrap_repro.{top} is in no layer: add it to LAYERS in {__file__}")


def top_name(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``: a script entry point (``python -m``), not an import of the library."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                     for c in test.comparators))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    guarded = {id(n) for guard in ast.walk(tree) if _is_main_guard(guard) for n in ast.walk(guard)}
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_import_goes_down_or_sideways():
    bad = []
    for path in PKG.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PKG:
            continue
        mine = layer_of(top_name(path))
        for mod in imported(ast.parse(path.read_text())):
            parts = mod.split(".")
            if parts[0] != "bootstrap_repro" or len(parts) < 2:
                continue
            if layer_of(parts[1]) > mine:
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_cli_and_views_start_without_torch():
    code = ("import sys, bootstrap_repro.cli, bootstrap_repro.views, bootstrap_repro.options, bootstrap_repro.logger;"
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'plotly' not in sys.modules, 'plotly imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert r.returncode == 0, r.stderr
