"""bootstrap-repro: reproducible deep-learning experiments.

The public seed API lives in sub-modules (``bootstrap_repro.engines``,
``datasets``, ``models``, ``optimizers``, ``views``) and in
:class:`~bootstrap_repro.options.Options` and :class:`~bootstrap_repro.logger.Logger`.
Importing this package imports nothing heavy (no torch).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
