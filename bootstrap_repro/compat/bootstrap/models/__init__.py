"""``bootstrap.models``: ``factory``, ``model`` (``Model``, ``DefaultModel``, ``SimpleModel``), ``networks``."""

from .factory import factory

__all__ = ["factory"]
