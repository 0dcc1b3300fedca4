"""``bootstrap.models.metrics``: ``factory``; ``accuracy`` (the seed's ``Accuracy`` and ``accuracy``)."""
