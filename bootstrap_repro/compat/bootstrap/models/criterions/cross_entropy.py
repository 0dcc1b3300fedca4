"""``bootstrap.models.criterions.cross_entropy``: the seed's ``CrossEntropyLoss`` (bootstrap-repro's; a ``[B, 1]`` ``class_id`` works)."""

from bootstrap_repro.models._criterions import CrossEntropyLoss

__all__ = ["CrossEntropyLoss"]
