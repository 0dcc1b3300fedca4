"""``bootstrap.models.criterions.bce``: the seed's ``BCEWithLogitsLoss`` (bootstrap-repro's; a ``[B, 1]`` ``class_id`` works)."""

from bootstrap_repro.models._criterions import BCEWithLogitsLoss

__all__ = ["BCEWithLogitsLoss"]
