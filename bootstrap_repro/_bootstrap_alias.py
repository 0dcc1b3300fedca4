"""``import bootstrap`` gives bootstrap-repro's compatibility layer, unless a real bootstrap is installed.

bootstrap.pytorch projects import ``bootstrap.lib.options``, ``bootstrap.datasets.dataset``, ...
Those compatibility modules live in ``bootstrap_repro/compat/bootstrap/``.  Two import-system
finders make the name ``bootstrap`` resolve to them without ever shadowing a real install:

- :class:`BootstrapAliasFinder`, *appended* to ``sys.meta_path``: it serves the top-level name
  ``bootstrap`` from that directory only when every earlier finder (the path finder, the finders of
  editable installs) found nothing.  The submodules (``bootstrap.lib.options``) are then found by
  the ordinary path finder in the package's ``__path__``: each compatibility module is loaded once,
  under its ``bootstrap.*`` name.
- :class:`RealBootstrapWatcher`, at the *front*: for ``bootstrap`` only, it looks the name up on
  ``sys.path`` itself.  A real (regular) package found there wins: the watcher prints one warning
  line (once per process) and steps aside.  A bare directory named ``bootstrap`` (a namespace
  portion, e.g. a data folder in the working directory) does not shadow the layer: as in Python's
  own rule, a regular package beats namespace portions, so the watcher serves the layer.

Installed by ``import bootstrap_repro`` and, at interpreter start-up, by the
``bootstrap_repro_compat.pth`` file that the wheel and the editable install put in site-packages.
Stdlib only (``os`` and ``sys``, already loaded at start-up) and cheap: nothing is looked up until something imports ``bootstrap``, and the finders
never raise.  ``BOOTSTRAP_REPRO_NO_BOOTSTRAP_ALIAS=1`` turns the alias off (read at each lookup).
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_DISABLE", "COMPAT_DIR", "BootstrapAliasFinder", "RealBootstrapWatcher", "install", "disabled"]

#: Set to 1 (or true/yes/on) to turn the ``bootstrap`` alias off.
ENV_DISABLE = "BOOTSTRAP_REPRO_NO_BOOTSTRAP_ALIAS"
#: The directory of the compatibility package served as ``bootstrap``.
COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat", "bootstrap")
_NAME = "bootstrap"
_MARK = "_bootstrap_repro_alias"  # attribute naming the role of our finders (robust to a reload of this module)
_warned = False


def disabled() -> bool:
    """Whether :data:`ENV_DISABLE` turns the alias off."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no", "off")


def _compat_spec() -> object:
    """The spec of the compatibility package, named ``bootstrap``; None if it is not there."""
    from importlib.util import spec_from_file_location

    init = os.path.join(COMPAT_DIR, "__init__.py")
    if not os.path.isfile(init):
        return None
    return spec_from_file_location(_NAME, init, submodule_search_locations=[COMPAT_DIR])


class BootstrapAliasFinder:
    """Serves ``bootstrap`` from the compatibility layer when no earlier finder did (end of ``sys.meta_path``)."""

    _bootstrap_repro_alias = "finder"

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != _NAME:
            return None
        try:
            return None if disabled() else _compat_spec()
        except Exception:
            return None

    def invalidate_caches(self) -> None:
        """Nothing cached."""

    def __repr__(self) -> str:
        return f"<bootstrap-repro: bootstrap -> {COMPAT_DIR}>"


class RealBootstrapWatcher:
    """Front of ``sys.meta_path``: a real ``bootstrap`` on ``sys.path`` wins, with one warning line."""

    _bootstrap_repro_alias = "watcher"

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != _NAME:
            return None
        try:
            if disabled():
                return None
            from importlib.machinery import PathFinder

            spec = PathFinder.find_spec(_NAME)
            if spec is None:
                return None  # maybe an editable install's finder has it; else BootstrapAliasFinder serves
            if spec.loader is None or spec.origin in (None, "namespace"):
                return _compat_spec()  # only namespace portions: a regular package wins over them
            _warn_once(spec.origin)
        except Exception:
            pass
        return None

    def invalidate_caches(self) -> None:
        """Nothing cached."""

    def __repr__(self) -> str:
        return "<bootstrap-repro: real bootstrap watcher>"


def _warn_once(origin: str | None) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    where = os.path.dirname(origin) if origin else "sys.path"
    sys.stderr.write(
        f"bootstrap-repro: warning: `import bootstrap` uses the bootstrap package installed at {where}, "
        f"not bootstrap-repro's compatibility layer; uninstall it (pip uninstall bootstrap.pytorch) to use "
        f"the layer, or set {ENV_DISABLE}=1 to silence this\n"
    )


def install() -> None:
    """Put both finders in ``sys.meta_path`` (idempotent)."""
    roles = {getattr(f, _MARK, None) for f in sys.meta_path}
    if "finder" not in roles:
        sys.meta_path.append(BootstrapAliasFinder())
    if "watcher" not in roles:
        sys.meta_path.insert(0, RealBootstrapWatcher())


install()
