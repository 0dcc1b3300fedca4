"""``bootstrap.models.criterions.nll``: the seed's ``NLLLoss`` (bootstrap-repro's; a ``[B, 1]`` ``class_id`` works)."""

from bootstrap_repro.models._criterions import NLLLoss

__all__ = ["NLLLoss"]
