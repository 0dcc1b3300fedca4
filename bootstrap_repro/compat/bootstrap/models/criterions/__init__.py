"""``bootstrap.models.criterions``: ``factory``."""
