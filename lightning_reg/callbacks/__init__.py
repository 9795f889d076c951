"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.early_stopping import EarlyStopping
from lightning_reg.callbacks.history import MetricsHistory
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout

__all__ = ["EarlyStopping", "MetricsHistory", "RNGState", "ScheduledDropout"]
