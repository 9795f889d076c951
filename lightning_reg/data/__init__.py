"""DataModules: the embedded digits set, torchvision image sets, and augmentation."""

from lightning_reg.core.augment import (
    AugmentConfig,
    RandomKerasAffine,
    RandomKerasColor,
    Standardizer,
    augment_batch,
    build_cpu_transform,
    fit_standardizer,
    mix_batch,
)
from lightning_reg.data.augment_mixin import AugmentationMixin, check_soft_targets, with_augmentation
from lightning_reg.data.datasets import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from lightning_reg.data.digits import DigitsDataModule
from lightning_reg.data.folds import FoldsMixin, with_folds
from lightning_reg.data.resident import DeviceResidentLoader
from lightning_reg.data.tokens import SyntheticTokensDataModule
from lightning_reg.data.vision import ImageDataModule

__all__ = [
    "FoldsMixin",
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
    "check_soft_targets",
    "fit_standardizer",
    "mix_batch",
    "with_augmentation",
    "with_folds",
]
