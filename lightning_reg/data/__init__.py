"""DataModules: the embedded digits set, torchvision image sets, and augmentation."""

from lightning_reg.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]
