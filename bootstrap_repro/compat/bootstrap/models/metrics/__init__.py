"""``bootstrap.models.metrics``: ``factory``."""
