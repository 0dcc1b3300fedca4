"""``bootstrap.models.networks``: ``factory`` and ``data_parallel``."""
