"""``bootstrap.models.networks.factory``: the network of ``model.network`` (``import`` or a built-in ``name``)."""

from __future__ import annotations

from typing import Any

from bootstrap_repro.models import network_factory

__all__ = ["factory"]


def factory(engine: Any = None) -> Any:
    """The network described by ``model.network``."""
    return network_factory(engine)
