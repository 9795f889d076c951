"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.history import MetricsHistory

__all__ = ["MetricsHistory"]
from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout

__all__ += ["ScheduledDropout"]
