"""lightning_reg: regularization for PyTorch Lightning."""
__version__ = "0.1.0"
from lightning_reg.callbacks.weight_penalty import MaxNorm, WeightPenalty
from lightning_reg.penalty_mixin import PenaltyLossMixin

__all__ = ["MaxNorm", "PenaltyLossMixin", "WeightPenalty"]
