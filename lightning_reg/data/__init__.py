"""DataModules: the embedded digits set, torchvision image sets, and augmentation."""

from lightning_reg.augment import (
    AugmentationMixin,
    AugmentConfig,
    RandomKerasAffine,
    RandomKerasColor,
    Standardizer,
    augment_batch,
    build_cpu_transform,
    fit_standardizer,
    mix_batch,
    with_augmentation,
)
from lightning_reg.data.digits import DigitsDataModule
from lightning_reg.data.resident import DeviceResidentLoader
from lightning_reg.data.tokens import SyntheticTokensDataModule
from lightning_reg.data.vision import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)

__all__ = [
    "AugmentConfig",
    "AugmentationMixin",
    "CIFAR10DataModule",
    "DeviceResidentLoader",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "RandomKerasAffine",
    "RandomKerasColor",
    "Standardizer",
    "SyntheticTokensDataModule",
    "augment_batch",
    "build_cpu_transform",
    "fit_standardizer",
    "mix_batch",
    "with_augmentation",
]
