"""``bootstrap.models.criterions``: ``factory``; ``nll``, ``cross_entropy``, ``bce`` (the seed's loss classes)."""
