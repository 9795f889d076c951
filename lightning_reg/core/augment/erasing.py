"""Pure, batched random erasing (Cutout) with torchvision's distribution: up to 10 tries per sample."""

from __future__ import annotations

import math

import torch

__all__ = ["box_masks", "erase", "sample_erasing_boxes"]

ATTEMPTS = 10


def sample_erasing_boxes(
    n: int,
    height: int,
    width: int,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Return ``(n, 4)`` integer boxes ``(top, left, h, w)``; ``h = 0`` means "not erased".

    Like ``torchvision.transforms.v2.RandomErasing``: erase with probability ``p``; area fraction uniform in
    ``scale``, log aspect ratio uniform in ``log(ratio)``; a box that does not fit is redrawn, up to 10
    times, after which the sample is left alone. Here all samples and tries are drawn at once.

    Example:
        >>> b = sample_erasing_boxes(3, 8, 8, 1.0, (0.1, 0.2), (1.0, 1.0), torch.Generator().manual_seed(0))
        >>> bool(((b[:, 2] >= 2) & (b[:, 2] <= 4)).all())
        True
    """
    device = torch.device(device)
    area = height * width
    u = torch.rand(n, ATTEMPTS, generator=generator, device=device)
    erase_area = area * (u * (scale[1] - scale[0]) + scale[0])
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(torch.rand(n, ATTEMPTS, generator=generator, device=device) * (lr[1] - lr[0]) + lr[0])
    h = torch.round(torch.sqrt(erase_area * aspect)).long()
    w = torch.round(torch.sqrt(erase_area / aspect)).long()
    ok = (h < height) & (w < width)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long, device=device))
    rows = torch.arange(n, device=device)
    h, w = h[rows, first], w[rows, first]
    do = ok.any(1) & (torch.rand(n, generator=generator, device=device) < p)
    h, w = torch.where(do, h, 0), torch.where(do, w, 0)
    top = (torch.rand(n, generator=generator, device=device) * (height - h + 1)).floor().long().clamp(max=height)
    left = (torch.rand(n, generator=generator, device=device) * (width - w + 1)).floor().long().clamp(max=width)
    return torch.stack([top, left, h, w], 1)


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(n, 1, H, W)`` boolean masks, True inside each sample's box.

    Example:
        >>> box_masks(torch.tensor([[1, 1, 2, 1]]), 4, 3)[0, 0].int().tolist()
        [[0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]]
    """
    rows = torch.arange(height, device=boxes.device).view(1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, width)
    top, left, h, w = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return ((rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)).unsqueeze(1)


def erase(
    x: torch.Tensor, boxes: torch.Tensor, value: str = "zero", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill each sample's box with 0 (``"zero"``) or standard-normal noise (``"random"``).

    Example:
        >>> erase(torch.ones(1, 1, 2, 2), torch.tensor([[0, 0, 1, 1]]))[0, 0].tolist()
        [[0.0, 1.0], [1.0, 1.0]]
    """
    mask = box_masks(boxes, x.shape[-2], x.shape[-1])
    if value == "random":
        fill = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        fill = torch.zeros((), device=x.device, dtype=x.dtype)
    return torch.where(mask, fill, x)
