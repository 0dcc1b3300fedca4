"""``bootstrap.lib``: ``options``, ``logger`` and ``utils``."""
