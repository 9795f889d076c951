"""lightning_reg: regularization for PyTorch Lightning."""
__version__ = "0.1.0"
from lightning_reg.callbacks.early_stopping import EarlyStopping  # noqa: E402
