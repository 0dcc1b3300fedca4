"""Install bootstrap-repro's dependencies from ``pyproject.toml``, before its code is copied in.

Used by the ``Dockerfile`` so that the dependency layer stays cached while only the
package's code changes::

    python install_deps.py --extras "examples" -- --no-index --find-links http://127.0.0.1:8000/

Packages already installed (e.g. the CUDA torch of a PyTorch base image) are kept when they
satisfy the requirement.  The build requirements are installed too, so that the package itself
installs with ``--no-build-isolation`` (no second download of setuptools per code change).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any


def _load_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        return tomllib.load(f)


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """The project's dependencies, those of ``extras``, and its build requirements."""
    data = _load_toml(pyproject)
    project = data["project"]
    reqs = list(project.get("dependencies", [])) + list(data.get("build-system", {}).get("requires", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"error: EXTRAS: no optional dependency group {extra!r} (have: {', '.join(optional)})")
        reqs += optional[extra]
    return reqs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default="pyproject.toml")
    parser.add_argument("--extras", default="", help="comma- or space-separated optional groups")
    parser.add_argument("pip_args", nargs="*", help="extra pip arguments, after --")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.replace(",", " ").split() if e]
    cmd = [sys.executable, "-m", "pip", "install", *args.pip_args, *requirements(args.pyproject, extras)]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
