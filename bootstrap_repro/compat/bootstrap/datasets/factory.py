"""``bootstrap.datasets.factory``: bootstrap-repro's dataset factory (``dataset.import`` or a built-in name)."""

from bootstrap_repro.datasets import factory

__all__ = ["factory"]
