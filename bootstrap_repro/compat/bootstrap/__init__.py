"""bootstrap.pytorch's API (0.0.13 and its later ``Options``), served by bootstrap-repro.

This package is bootstrap-repro's compatibility layer, imported as ``bootstrap`` through the
import alias of :mod:`bootstrap_repro._bootstrap_alias` when no real bootstrap.pytorch is installed.
Its modules are thin: they re-export bootstrap-repro's classes where they match the seed's and add
the pieces only the seed had.  See docs/migrating.md.
"""

if __name__ != "bootstrap":
    raise ImportError(
        f"{__name__} is bootstrap-repro's compatibility layer: import it as `bootstrap` "
        f"(e.g. `from bootstrap.lib.options import Options`), not by its file path"
    )

from .__version__ import __version__

__all__ = ["__version__"]

#: Marks this package as bootstrap-repro's layer (a real bootstrap.pytorch has no such attribute).
__bootstrap_repro__ = True
