"""Augmentation: pure batched transforms, the torchvision v2 cpu path, and the DataModule mixin."""

from lightning_reg.augment.color import apply_color
from lightning_reg.augment.config import POLICIES, AugmentConfig
from lightning_reg.augment.erasing import erase, sample_erasing_boxes
from lightning_reg.augment.geometric import affine_matrices, apply_geometry, sample_affine_params, warp_affine
from lightning_reg.augment.mixin import AugmentationMixin, check_soft_targets, with_augmentation
from lightning_reg.augment.mixing import mix_batch, one_hot_smooth, sample_beta
from lightning_reg.augment.pipeline import RandomKerasAffine, RandomKerasColor, augment_batch, build_cpu_transform
from lightning_reg.augment.standardize import Standardizer, fit_standardizer, zca_matrix

__all__ = [
    "POLICIES",
    "AugmentConfig",
    "AugmentationMixin",
    "RandomKerasAffine",
    "RandomKerasColor",
    "Standardizer",
    "affine_matrices",
    "apply_color",
    "apply_geometry",
    "augment_batch",
    "build_cpu_transform",
    "check_soft_targets",
    "erase",
    "fit_standardizer",
    "mix_batch",
    "one_hot_smooth",
    "sample_affine_params",
    "sample_beta",
    "sample_erasing_boxes",
    "warp_affine",
    "with_augmentation",
    "zca_matrix",
]
