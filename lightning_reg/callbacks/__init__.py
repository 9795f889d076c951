"""Lightning callbacks shipped by lightning_reg."""

from lightning_reg.callbacks.history import MetricsHistory

__all__ = ["MetricsHistory"]
from lightning_reg.callbacks.early_stopping import EarlyStopping  # noqa: E402

__all__ += ["EarlyStopping"]
