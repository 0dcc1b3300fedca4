"""bootstrap-repro: reproducible deep-learning experiments.

The public seed API lives in sub-modules (``bootstrap_repro.engines``,
``datasets``, ``models``, ``optimizers``, ``views``) and in
:class:`~bootstrap_repro.options.Options` and :class:`~bootstrap_repro.logger.Logger`.
Importing this package imports nothing heavy (no torch): keep it that way, the
``bootstrap_repro_compat.pth`` start-up file imports it in every interpreter.

It installs the ``bootstrap`` import alias (:mod:`bootstrap_repro._bootstrap_alias`):
``import bootstrap.lib.options`` gives the compatibility layer for bootstrap.pytorch
projects unless a real bootstrap.pytorch is installed (see docs/migrating.md).
"""

from bootstrap_repro import _bootstrap_alias  # noqa: F401  (installs the `bootstrap` alias; stdlib only)

__version__ = "0.1.0"
__all__ = ["__version__"]
