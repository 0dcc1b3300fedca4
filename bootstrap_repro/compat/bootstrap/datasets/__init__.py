"""``bootstrap.datasets``: ``factory``, ``dataset`` (``Dataset``, ``ListDatasets``), ``transforms``."""

from .factory import factory

__all__ = ["factory"]
