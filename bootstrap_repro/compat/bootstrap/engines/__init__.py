"""``bootstrap.engines``: ``factory``, ``engine`` (``Engine``), ``logger`` (``LoggerEngine``)."""

from .factory import factory

__all__ = ["factory"]
