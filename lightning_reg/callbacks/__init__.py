"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.activity import ActivityRegularization
from lightning_reg.callbacks.augmix_jsd import AugMixJSD
from lightning_reg.callbacks.checkpoint import AtomicModelCheckpoint
from lightning_reg.callbacks.constraints import MinMaxNorm, NonNeg, UnitNorm
from lightning_reg.callbacks.early_stopping import EarlyStopping
from lightning_reg.callbacks.history import MetricsHistory
from lightning_reg.callbacks.label_smoothing import LabelSmoothing
from lightning_reg.callbacks.penalized_loss import PenalizedLoss
from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout
from lightning_reg.callbacks.stochastic_depth import StochasticDepth
from lightning_reg.callbacks.weight_penalty import MaxNorm, WeightPenalty

__all__ = [
    "ActivityRegularization",
    "AtomicModelCheckpoint",
    "AugMixJSD",
    "EarlyStopping",
    "LabelSmoothing",
    "MaxNorm",
    "MetricsHistory",
    "MinMaxNorm",
    "NonNeg",
    "PenalizedLoss",
    "RestoreBestWeights",
    "RNGState",
    "ScheduledDropout",
    "StochasticDepth",
    "UnitNorm",
    "WeightPenalty",
]
