"""The bootstrap.pytorch release whose API this layer provides."""

__version__ = "0.0.13"
