"""lightning_reg: regularization for PyTorch Lightning."""
__version__ = "0.1.0"
