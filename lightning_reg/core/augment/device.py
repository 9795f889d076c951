"""The device augmentation path (``augment_on="device"``): :func:`augment_batch`, one batched call per training
batch with a separate draw per sample: the policy (RandAugment, TrivialAugment: :mod:`.policies`), crop + affine +
flips (one ``grid_sample``), brightness/channel shift, erasing.

It applies the same parameter distributions in the same order as the CPU path
(:func:`~lightning_reg.core.augment.cpu.build_cpu_transform`).
"""

from __future__ import annotations

import torch

from lightning_reg.core.augment.color import apply_color
from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.erasing import erase, sample_erasing_boxes
from lightning_reg.core.augment.geometric import apply_geometry
from lightning_reg.core.augment.policies import policy_batch

__all__ = ["augment_batch"]


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Device path: augment a float batch ``(N, C, H, W)`` with a different draw per sample.

    Returns the batch and the per-sample parameters (``angle``, ``shift_x``, ..., ``erase_box``).

    Example:
        >>> cfg = AugmentConfig(rotation_range=20, width_shift_range=0.2, horizontal_flip=True)
        >>> out, p = augment_batch(torch.rand(16, 1, 28, 28), cfg, torch.Generator().manual_seed(0))
        >>> out.shape, len(set(p["angle"].tolist()))
        (torch.Size([16, 1, 28, 28]), 16)
    """
    params: dict[str, torch.Tensor] = {}
    if cfg.policy is not None:  # first, on uint8-rounded images, as the cpu path runs it
        x = policy_batch(x, cfg.policy, cfg.policy_kwargs, generator)
    if cfg.has_geometry:
        x, p = apply_geometry(x, cfg, generator)
        params.update(p)
    if cfg.has_color:
        x, p = apply_color(x, cfg, generator)
        params.update(p)
    if cfg.erasing_prob > 0:
        boxes = sample_erasing_boxes(
            x.shape[0],
            x.shape[-2],
            x.shape[-1],
            cfg.erasing_prob,
            cfg.erasing_scale,
            cfg.erasing_ratio,
            generator,
            x.device,
        )
        x = erase(x, boxes, cfg.erasing_value, generator)
        params["erase_box"] = boxes
    return x, params
