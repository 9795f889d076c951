"""The cpu path (per-sample torchvision v2 in DataLoader workers) and the device path (batched, per-sample
draws) produce the same distribution of transforms and keep labels with their images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from lightning_reg.core.augment import AugmentConfig, RandomKerasAffine, augment_batch, build_cpu_transform
from lightning_reg.data import MNISTDataModule

from data_factories import write_idx

N = 1000
N_IMAGES = 600  # per-sample v2 calls are the slow part of this file
AFFINE = dict(rotation_range=30.0, width_shift_range=0.2, height_shift_range=0.1, shear_range=10.0, zoom_range=0.2)


def test_affine_parameter_distributions_agree() -> None:
    cfg = AugmentConfig(**AFFINE)
    record: list[dict[str, float]] = []
    t = RandomKerasAffine(cfg, record=record)
    torch.manual_seed(0)
    img = torch.rand(1, 16, 16)
    for _ in range(N):
        t(img)
    _, dev = augment_batch(img.expand(N, -1, -1, -1).unsqueeze(1)[:, 0], cfg, torch.Generator().manual_seed(1))
    for key in ("angle", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y"):
        cpu = np.array([r[key] for r in record])
        # Two-sample Kolmogorov-Smirnov: a wrong unit or range (degrees vs radians, pixels vs fractions) gives
        # p ~ 0; the same distribution gives p > 0.001 with probability 0.999.
        assert ks_2samp(cpu, dev[key].numpy()).pvalue > 1e-3, key


def blob(size: int = 21) -> torch.Tensor:
    img = torch.zeros(1, size, size)
    img[0, 8:13, 6:11] = 1.0  # off-centre horizontally so flips move the centroid
    return img


def centroids(batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    h, w = batch.shape[-2:]
    mass = batch.sum((1, 2, 3))
    cx = (batch.sum((1, 2)) * torch.arange(w)).sum(-1) / mass
    cy = (batch.sum((1, 3)) * torch.arange(h)).sum(-1) / mass
    # Rounded: integer shifts give tied values, and 4.9999995 vs 5.0 must not count as a difference.
    return np.round(cx.numpy(), 3), np.round(cy.numpy(), 3)


@pytest.mark.parametrize(
    "cfg_kwargs",
    [
        dict(width_shift_range=0.15, height_shift_range=0.1, horizontal_flip=True, fill_mode="constant"),
        dict(crop_padding=3, vertical_flip=True),
    ],
)
def test_cpu_and_device_outputs_have_the_same_displacement_distribution(cfg_kwargs: dict) -> None:
    """Measured on the images themselves: where the blob's centroid lands, per sample, on each path."""
    img = blob()
    torch.manual_seed(0)
    cpu_t = build_cpu_transform(AugmentConfig(augment_on="cpu", **cfg_kwargs), 21, 21)
    cpu = torch.stack([cpu_t(img) for _ in range(N_IMAGES)])
    dev, _ = augment_batch(
        img.expand(N_IMAGES, 1, 21, 21).contiguous(), AugmentConfig(**cfg_kwargs), torch.Generator().manual_seed(0)
    )
    for a, b in zip(centroids(cpu), centroids(dev)):
        assert ks_2samp(a, b).pvalue > 1e-3
        assert a.std() > 1.0  # the displacement really varies per sample on both paths


def write_constant_mnist(root: Path, n: int = 200) -> Path:
    """IDX files whose image i is the constant label(i) * 20 + 20: any affine with nearest fill keeps it."""
    y = (np.arange(n) * 7 % 10).astype(np.uint8)
    x = np.repeat((y * 20 + 20).astype(np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    for prefix in ("train", "t10k"):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", x)
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", y)
    return root


@pytest.mark.parametrize("augment_on", ["cpu", "device"])
def test_labels_stay_with_their_images_on_both_paths(tmp_path: Path, augment_on: str) -> None:
    write_constant_mnist(tmp_path)
    dm = MNISTDataModule(
        data_dir=str(tmp_path), batch_size=32, augment=dict(augment_on=augment_on, **AFFINE, horizontal_flip=True)
    )
    dm.setup("fit")
    seen = 0
    for x, y in dm.train_dataloader():
        x, y = dm.augment_training_batch(x, y)
        level = torch.round((x.mean((1, 2, 3)) * 255 - 20) / 20).long()
        assert torch.equal(level, y)
        seen += len(y)
    assert seen == len(dm.data_train.y)
