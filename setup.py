"""Build hook: ship ``bootstrap_repro_compat.pth`` at the root of site-packages.

The project's metadata is in pyproject.toml; this file only adds the ``build_pth`` step to
``build``.  The ``.pth`` file runs at every interpreter start-up and installs the ``bootstrap``
import alias (``bootstrap_repro/_bootstrap_alias.py``), so that a bootstrap.pytorch project's
``from bootstrap.lib.options import Options`` works in a plain ``python script.py``.  Its one line
never raises (an uninstalled or broken package is skipped silently) and imports only
``bootstrap_repro/__init__.py`` and the stdlib-only alias module.

It is written for a wheel (``pip install .``: into the build dir, which the wheel copies) and for
an editable install (``pip install -e .``: setuptools' ``editable_wheel`` discards the build dir,
so the file goes straight into the wheel being assembled, as ``install_data`` files do).
"""

from __future__ import annotations

import os

from setuptools import Command, setup
from setuptools.command.build import build

PTH_NAME = "bootstrap_repro_compat.pth"
PTH_TEXT = 'import sys; exec("try:\\n import bootstrap_repro._bootstrap_alias\\nexcept Exception:\\n pass")\n'


class build_pth(Command):
    """Write ``bootstrap_repro_compat.pth`` next to the packages."""

    description = f"write {PTH_NAME} (installs the `bootstrap` import alias at start-up)"
    user_options: list[tuple[str, str | None, str]] = []
    editable_mode = False  # set by setuptools' editable_wheel

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.outputs: list[str] = []

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def run(self) -> None:
        target = self.build_lib
        if self.editable_mode:  # the editable wheel is assembled in install's install_lib, not in build_lib
            target = self.get_finalized_command("install").install_lib
        assert target is not None
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, PTH_NAME)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(PTH_TEXT)
        self.outputs = [] if self.editable_mode else [path]

    def get_outputs(self) -> list[str]:
        return self.outputs

    def get_source_files(self) -> list[str]:
        return []


class Build(build):
    """``build`` plus :class:`build_pth`."""

    sub_commands = [*build.sub_commands, ("build_pth", None)]


setup(cmdclass={"build": Build, "build_pth": build_pth})
