"""``bootstrap.engines.logger``: the seed's ``LoggerEngine``.

As ``engine.name: logger`` in bootstrap-repro (the same loop as ``default``), it is the same class
as :class:`~bootstrap.engines.engine.Engine`.
"""

from .engine import Engine

LoggerEngine = Engine

__all__ = ["LoggerEngine"]
