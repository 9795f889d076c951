"""Pure, batched MixUp and CutMix with soft targets and a per-sample draw (timm's ``elem`` mode by default).

Every sample ``i`` is mixed with its partner ``n - 1 - i`` (the flipped batch), so no permutation has to be
drawn and odd batches work in ``elem`` and ``batch`` modes. ``pair`` mode mixes each pair both ways with
one shared ``lambda`` and therefore needs an even batch.
"""

from __future__ import annotations

import torch

from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.erasing import box_masks
from lightning_reg.core.augment.sampling import sample_gamma
from lightning_reg.errors import ConfigError

__all__ = ["cutmix_boxes", "mix_batch", "one_hot_smooth", "sample_beta", "sample_gamma", "smooth_labels"]


def sample_beta(
    n: int, alpha: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) from a seeded generator.

    Example:
        >>> b = sample_beta(1000, 0.4, torch.Generator().manual_seed(0))
        >>> bool(((b >= 0) & (b <= 1)).all())
        True
    """
    g = sample_gamma((2, n), alpha, generator, device)
    return g[0] / (g[0] + g[1]).clamp_min(1e-30)


def one_hot_smooth(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot ``(N, C)`` targets with label smoothing; each row sums to 1.

    Example:
        >>> one_hot_smooth(torch.tensor([1]), 4, 0.2).tolist()
        [[0.05000000074505806, 0.8500000238418579, 0.05000000074505806, 0.05000000074505806]]
    """
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, device=y.device)
    return out.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)


def smooth_labels(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label smoothing on the target side: class indices or soft ``(N, C)`` targets to ``(1 - e) y + e / C``.

    Indices become :func:`one_hot_smooth` rows; soft targets (mixed ones, say) are smoothed in place of the
    one-hot rows they were mixed from, which gives the same result as smoothing first and mixing after
    (timm's ``Mixup``), because both maps are affine with weights summing to one.

    Example:
        >>> smooth_labels(torch.tensor([0]), 2, 0.2)
        tensor([[0.9000, 0.1000]])
        >>> smooth_labels(torch.tensor([[0.5, 0.5]]), 2, 0.2)
        tensor([[0.5000, 0.5000]])
    """
    if not y.is_floating_point():
        if y.ndim != 1:
            raise ConfigError(f"label smoothing needs class indices of shape (N,); got shape {tuple(y.shape)}.")
        return one_hot_smooth(y, num_classes, smoothing)
    if y.ndim != 2 or y.shape[1] != num_classes:
        raise ConfigError(
            f"label smoothing needs soft targets of shape (N, {num_classes}); got shape {tuple(y.shape)}."
        )
    return y * (1.0 - smoothing) + smoothing / num_classes


def cutmix_boxes(
    lam: torch.Tensor, height: int, width: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CutMix boxes ``(n, 4)`` covering about ``1 - lam`` of the image, and the exact kept fraction.

    Example:
        >>> b, lam = cutmix_boxes(torch.tensor([1.0, 0.75]), 8, 8, torch.Generator().manual_seed(0))
        >>> lam[0].item(), bool(lam[1] >= 0.75)
        (1.0, True)
    """
    n = lam.shape[0]
    cut = torch.sqrt(1.0 - lam)
    ch, cw = (cut * height).round().long(), (cut * width).round().long()
    cy = (torch.rand(n, generator=generator, device=lam.device) * height).long()
    cx = (torch.rand(n, generator=generator, device=lam.device) * width).long()
    top, bottom = (cy - ch // 2).clamp(0, height), (cy + ch - ch // 2).clamp(0, height)
    left, right = (cx - cw // 2).clamp(0, width), (cx + cw - cw // 2).clamp(0, width)
    boxes = torch.stack([top, left, bottom - top, right - left], 1)
    kept = 1.0 - (boxes[:, 2] * boxes[:, 3]).float() / (height * width)
    return boxes, kept


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    cfg: AugmentConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Apply MixUp/CutMix to a batch; return mixed images, soft targets ``(N, C)`` and per-sample params.

    ``y`` may be class indices or soft targets already. Each sample is mixed with probability ``mix_prob``;
    when both mixers are on, CutMix is chosen with probability ``switch_prob``.

    Example:
        >>> cfg = AugmentConfig(mixup_alpha=0.4)
        >>> xm, ym, p = mix_batch(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), 4, cfg,
        ...                       torch.Generator().manual_seed(0))
        >>> torch.allclose(ym.sum(1), torch.ones(4))
        True
    """
    n, _, h, w = x.shape
    dev = x.device
    if cfg.mix_mode == "pair" and n % 2:
        raise ConfigError(
            f"`augment.mix_mode='pair'` mixes samples in pairs and needs an even batch; got a batch of {n}. "
            "Use an even batch_size with drop_last=true, or mix_mode='elem'."
        )
    draws = {"batch": 1, "pair": n // 2, "elem": n}[cfg.mix_mode]

    def spread(t: torch.Tensor) -> torch.Tensor:
        # One draw per batch, per pair (both members share it: partner of i is n - 1 - i) or per sample.
        if cfg.mix_mode == "batch":
            return t.expand(n, *t.shape[1:])
        if cfg.mix_mode == "pair":
            return torch.cat([t, t.flip(0)])
        return t

    use_cut = torch.rand(draws, generator=generator, device=dev) < cfg.switch_prob
    if cfg.cutmix_alpha <= 0:
        use_cut = torch.zeros_like(use_cut)
    elif cfg.mixup_alpha <= 0:
        use_cut = torch.ones_like(use_cut)
    ones = torch.ones(draws, device=dev)
    lam_mix = sample_beta(draws, cfg.mixup_alpha, generator, dev) if cfg.mixup_alpha > 0 else ones
    lam_cut = sample_beta(draws, cfg.cutmix_alpha, generator, dev) if cfg.cutmix_alpha > 0 else ones
    apply = torch.rand(draws, generator=generator, device=dev) < cfg.mix_prob
    boxes, kept = cutmix_boxes(torch.where(apply & use_cut, lam_cut, ones), h, w, generator)
    lam = torch.where(apply, torch.where(use_cut, kept, lam_mix), ones)
    lam, use_cut, apply, boxes = spread(lam), spread(use_cut), spread(apply), spread(boxes)
    partner = x.flip(0)
    mixed_up = lam.view(n, 1, 1, 1) * x + (1 - lam.view(n, 1, 1, 1)) * partner
    cut_x = torch.where(box_masks(boxes, h, w), partner, x)
    out = torch.where((apply & use_cut).view(n, 1, 1, 1), cut_x, mixed_up)
    if y.is_floating_point():
        # already soft: smoothing was applied by whoever made them
        soft = y
    else:
        soft = one_hot_smooth(y, num_classes, cfg.label_smoothing)
    targets = lam.view(n, 1) * soft + (1 - lam.view(n, 1)) * soft.flip(0)
    return out, targets, {"lam": lam, "cutmix": (apply & use_cut).float(), "applied": apply.float()}
