"""``bootstrap.models.factory``: bootstrap-repro's model factory (``model.import`` or ``model.name``)."""

from bootstrap_repro.models import factory

__all__ = ["factory"]
