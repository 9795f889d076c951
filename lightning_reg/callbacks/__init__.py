"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.history import MetricsHistory
from lightning_reg.callbacks.rng_state import RNGState

__all__ = ["MetricsHistory", "RNGState"]
