"""``bootstrap.models.model``: the seed's ``Model``, ``DefaultModel`` and ``SimpleModel``.

They are bootstrap-repro's own classes, which take the seed's constructors too
(``DefaultModel(engine)`` builds its parts from the factories, one criterion and metric per mode,
and a subclass may override ``_init_network`` / ``_init_criterions`` / ``_init_metrics``).
"""

from bootstrap_repro.models import DefaultModel, Model, SimpleModel

__all__ = ["Model", "DefaultModel", "SimpleModel"]
