"""Augmentation, pure: batched transforms (the device path), the torchvision v2 CPU path, the batch mixers and the
featurewise statistics (centre/std, ZCA). The DataModule glue is :mod:`lightning_reg.data.augment_mixin`."""

from lightning_reg.core.augment.color import apply_color
from lightning_reg.core.augment.config import POLICIES, AugmentConfig
from lightning_reg.core.augment.cpu import RandomKerasAffine, RandomKerasColor, build_cpu_transform
from lightning_reg.core.augment.device import augment_batch
from lightning_reg.core.augment.erasing import erase, sample_erasing_boxes
from lightning_reg.core.augment.featurewise import Standardizer, fit_standardizer, zca_matrix
from lightning_reg.core.augment.geometric import affine_matrices, apply_geometry, sample_affine_params, warp_affine
from lightning_reg.core.augment.mixers import mix_batch, one_hot_smooth, sample_beta

__all__ = [
    "POLICIES",
    "AugmentConfig",
    "RandomKerasAffine",
    "RandomKerasColor",
    "Standardizer",
    "affine_matrices",
    "apply_color",
    "apply_geometry",
    "augment_batch",
    "build_cpu_transform",
    "erase",
    "fit_standardizer",
    "mix_batch",
    "one_hot_smooth",
    "sample_affine_params",
    "sample_beta",
    "sample_erasing_boxes",
    "warp_affine",
    "zca_matrix",
]
