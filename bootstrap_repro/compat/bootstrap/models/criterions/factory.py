"""``bootstrap.models.criterions.factory``: the criterion of ``model.criterion``, per mode as the seed asked."""

from __future__ import annotations

from typing import Any

from bootstrap_repro.models import criterion_factory

__all__ = ["factory"]


def factory(engine: Any = None, mode: str | None = None) -> Any:
    """The criterion described by ``model.criterion`` for ``mode`` (a key of ``engine.dataset``), or None."""
    return criterion_factory(engine, mode)
