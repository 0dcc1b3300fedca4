"""``bootstrap.engines.factory``: bootstrap-repro's engine factory (``engine.import``, or ``default``/``logger``)."""

from bootstrap_repro.engines import factory

__all__ = ["factory"]
