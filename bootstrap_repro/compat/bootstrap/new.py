"""``bootstrap.new``: the seed's project generator.

``new_project('MyProject', '.')`` (or ``python -m bootstrap.new --project_name MyProject``) writes
``./myproject.bootstrap.pytorch/``: a seed-style project (imports from ``bootstrap.*``) with a
synthetic binary dataset, a one-layer network, a BCE criterion, an accuracy metric and
``myproject/options/myproject.yaml``.  Run it from that folder with
``bootstrap-repro run -o myproject/options/myproject.yaml`` (or ``python -m bootstrap.run -o ...``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bootstrap_repro.migrate import SEED_TEMPLATE, render

__all__ = ["new_project", "TEMPLATE"]

#: Relative path -> content; ``{lower}`` and ``{Name}`` are replaced by the project's names (the template
#: ``bootstrap-repro new`` migrates to bootstrap-repro's API).
TEMPLATE: dict[str, str] = SEED_TEMPLATE


def new_project(prj_name: str, prj_dir: str = ".") -> Path:
    """Write ``<prj_dir>/<name lower>.bootstrap.pytorch/`` from :data:`TEMPLATE`; returns that folder.

    ``prj_name`` must be a Python identifier (it names classes and the package).  The folder must
    not exist yet.
    """
    if not isinstance(prj_name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prj_name):
        raise ValueError(f"new_project: the project name must be a Python identifier like MyProject, got {prj_name!r}")
    lower = prj_name.lower()
    root = Path(prj_dir) / f"{lower}.bootstrap.pytorch"
    root.mkdir()  # FileExistsError when it exists: nothing is overwritten
    print(f"Creating project {lower} in {root}")
    for rel, content in render(prj_name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Create a bootstrap.pytorch project.")
    parser.add_argument("--project_name", type=str, default="MyProject")
    parser.add_argument("--project_dir", type=str, default=".")
    args = parser.parse_args()
    new_project(args.project_name, args.project_dir)
