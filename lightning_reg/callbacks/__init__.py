"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.history import MetricsHistory

__all__ = ["MetricsHistory"]
