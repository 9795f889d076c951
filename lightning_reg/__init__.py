"""lightning_reg: regularization for PyTorch Lightning."""
__version__ = "0.1.0"
from lightning_reg.data import (  # noqa: E402
    AugmentationMixin,
    AugmentConfig,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)

__all__ = [
    "AugmentConfig",
    "AugmentationMixin",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
]
