"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.history import MetricsHistory

__all__ = ["MetricsHistory"]
from lightning_reg.callbacks.weight_penalty import MaxNorm, WeightPenalty

__all__ += ["MaxNorm", "WeightPenalty"]
