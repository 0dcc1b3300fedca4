"""``bootstrap.models.metrics.factory``: the metric of ``model.metric``, per mode as the seed asked."""

from __future__ import annotations

from typing import Any

from bootstrap_repro.models import metric_factory

__all__ = ["factory"]


def factory(engine: Any = None, mode: str | None = None) -> Any:
    """The metric described by ``model.metric`` for ``mode`` (a key of ``engine.dataset``), or None."""
    return metric_factory(engine, mode)
