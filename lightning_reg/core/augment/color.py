"""Pure, batched intensity transforms with a draw per sample: Keras brightness and channel shift."""

from __future__ import annotations

import torch

from lightning_reg.core.augment.config import AugmentConfig

__all__ = ["apply_color"]


def apply_color(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scale by a per-sample brightness factor, then add a per-sample channel shift clipped to the image's range.

    As in Keras, brightness clips to ``[0, 1]`` (0-255 there) and the channel shift clips each image to its
    own min/max.

    Example:
        >>> y, p = apply_color(torch.full((2, 1, 2, 2), 0.5), AugmentConfig(brightness_range=[2.0, 2.0]))
        >>> y.max().item(), p["brightness"].tolist()
        (1.0, [2.0, 2.0])
    """
    n = x.shape[0]
    params: dict[str, torch.Tensor] = {}
    if cfg.brightness_range is not None:
        lo, hi = cfg.brightness_range
        f = torch.rand(n, generator=generator, device=x.device) * (hi - lo) + lo
        params["brightness"] = f
        x = (x * f.view(n, 1, 1, 1)).clamp(0.0, 1.0)
    if cfg.channel_shift_range > 0:
        r = cfg.channel_shift_range
        s = (torch.rand(n, generator=generator, device=x.device) * 2 - 1) * r
        params["channel_shift"] = s
        flat = x.reshape(n, -1)
        lo, hi = flat.amin(1).view(n, 1, 1, 1), flat.amax(1).view(n, 1, 1, 1)
        x = torch.minimum(torch.maximum(x + s.view(n, 1, 1, 1), lo), hi)
    return x, params
