"""Noise and structured-dropout modules for injection: Keras' noise layers and timm's DropBlock (pure torch).

Each is the identity in eval mode or at rate 0, and exposes one float rate that
:class:`~lightning_reg.ScheduledDropout` schedules (``p``, ``stddev`` or ``drop_prob``):

- :class:`GaussianNoise` (Keras ``GaussianNoise``): ``x + stddev · N(0, 1)``; the rate is ``stddev``, in units
  of the activations.
- :class:`GaussianDropout` (Keras ``GaussianDropout``): ``x · N(1, p / (1 - p))`` (the variance of dropout
  with rate ``p``; mean preserved).
- :class:`SpatialDropout` (Keras ``SpatialDropout1D/2D/3D``, channels first): drops whole channels of a
  ``(N, C, *spatial)`` feature map, kept ones scaled by ``1 / (1 - p)``.
- ``nn.AlphaDropout`` (Keras ``AlphaDropout``, for SELU networks) is used as torch ships it.
- :class:`DropBlock2d` (timm ``DropBlock2d``): drops ``block_size × block_size`` blocks of a ``(N, C, H, W)``
  map, the block centres drawn with timm's ``gamma``, all channels sharing the mask, the kept activations
  rescaled by the kept fraction of the batch, as :func:`timm.layers.drop_block_2d` does by default (the same
  mask on the same seed: ``tests/parity``).

Example:
    >>> x = torch.ones(2, 3, 4, 4)
    >>> GaussianNoise(0.1).eval()(x).equal(x), DropBlock2d(0.1, 3).eval()(x).equal(x)
    (True, True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from lightning_reg.errors import ConfigError, check_int

__all__ = ["DropBlock2d", "GaussianDropout", "GaussianNoise", "SpatialDropout", "drop_block_2d", "dropblock_gamma"]


class GaussianNoise(nn.Module):
    """Additive zero-mean Gaussian noise with standard deviation ``stddev``, in training only.

    Example:
        >>> torch.manual_seed(0) and None
        >>> y = GaussianNoise(0.5)(torch.zeros(100_000))
        >>> round(float(y.std()), 2)
        0.5
    """

    #: The attribute :class:`~lightning_reg.ScheduledDropout` schedules.
    rate_attr = "stddev"

    def __init__(self, stddev: float = 0.1) -> None:
        super().__init__()
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or not stddev >= 0:
            raise ConfigError(f"`stddev` must be a number >= 0; got {stddev!r}.")
        self.stddev = float(stddev)

    @override
    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.stddev == 0.0:
            return x
        return x + torch.randn_like(x) * self.stddev

    @override
    def extra_repr(self) -> str:
        return f"stddev={self.stddev}"


class GaussianDropout(nn.Dropout):
    """Multiplicative Gaussian noise ``N(1, p / (1 - p))``: dropout's mean and variance without zeros.

    Example:
        >>> torch.manual_seed(0) and None
        >>> y = GaussianDropout(0.2)(torch.ones(100_000))
        >>> round(float(y.mean()), 2), round(float(y.std()), 2)  # sqrt(0.2 / 0.8) = 0.5
        (1.0, 0.5)
    """

    @override
    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        stddev = math.sqrt(self.p / (1.0 - self.p))
        return x * (1.0 + torch.randn_like(x) * stddev)


class SpatialDropout(nn.Dropout):
    """Channel-wise dropout of a ``(N, C, *spatial)`` map: whole channels zeroed per sample, for any spatial rank.

    Example:
        >>> torch.manual_seed(0) and None
        >>> y = SpatialDropout(0.5)(torch.ones(1, 6, 2, 2))
        >>> sorted({float(v) for v in y.flatten()}), [float(c.std()) for c in y[0]] == [0.0] * 6
        ([0.0, 2.0], True)
    """

    @override
    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.ndim < 3:
            raise ConfigError(
                f"SpatialDropout drops channels of (N, C, *spatial) feature maps; got a tensor of shape "
                f"{tuple(x.shape)}. Inject it after a convolution's layer (e.g. inject=['Conv2d']), or use dropout."
            )
        keep = 1.0 - self.p
        mask = torch.empty(x.shape[:2] + (1,) * (x.ndim - 2), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)


def dropblock_gamma(drop_prob: float, block_size: int, height: int, width: int, gamma_scale: float = 1.0) -> float:
    """timm's seed rate: ``gamma_scale · drop_prob · H · W / (kh · kw) / ((H − kh + 1)(W − kw + 1))``, ``k = min(block, side)``.

    Example:
        >>> round(dropblock_gamma(0.1, 3, 8, 8), 6)  # 0.1 * 64 / 9 / 36
        0.019753
    """
    kh, kw = min(block_size, height), min(block_size, width)
    return gamma_scale * drop_prob * height * width / (kh * kw) / ((height - kh + 1) * (width - kw + 1))


def drop_block_2d(
    x: Tensor, drop_prob: float, block_size: int = 7, gamma_scale: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """DropBlock on ``(N, C, H, W)``: timm's ``drop_block_2d`` with its defaults (coupled channels, scale by keep).

    With ``generator=None`` it draws from torch's global stream exactly as timm does, so the same seed gives the
    same mask.

    Example:
        >>> y = drop_block_2d(torch.ones(2, 1, 8, 8), 0.3, 3, generator=torch.Generator().manual_seed(0))
        >>> y.shape, bool((y == 0).any())
        (torch.Size([2, 1, 8, 8]), True)
    """
    if x.ndim != 4:
        raise ConfigError(
            f"DropBlock2d drops blocks of (N, C, H, W) feature maps; got a tensor of shape {tuple(x.shape)}. "
            "Inject it after a 2-d convolution's layer (e.g. inject=['Conv2d'] or the ReLU after it)."
        )
    n, _, h, w = x.shape
    kh, kw = min(block_size, h), min(block_size, w)
    gamma = dropblock_gamma(drop_prob, block_size, h, w, gamma_scale)
    with torch.no_grad():
        block_mask = torch.empty((n, 1, h, w), dtype=x.dtype, device=x.device).bernoulli_(gamma, generator=generator)
        block_mask = F.max_pool2d(block_mask, kernel_size=(kh, kw), stride=1, padding=(kh // 2, kw // 2))
        if kh % 2 == 0 or kw % 2 == 0:  # an even block: max_pool2d's output is one larger on that side
            block_mask = block_mask[..., (kh + 1) % 2 :, (kw + 1) % 2 :]
        keep_mask = 1.0 - block_mask
        scale = keep_mask.numel() / keep_mask.to(dtype=torch.float32).sum().add(1e-7)
        keep_mask.mul_(scale.to(x.dtype))
    return x * keep_mask


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al. 2018) with timm's semantics; the rate attribute is ``drop_prob``, as in timm.

    Example:
        >>> DropBlock2d(0.1, block_size=3)
        DropBlock2d(drop_prob=0.1, block_size=3, gamma_scale=1.0)
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, gamma_scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(drop_prob, bool) or not isinstance(drop_prob, (int, float)) or not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f"`drop_prob` must be in [0, 1); got {drop_prob!r}.")
        check_int("block_size", block_size, low=1)
        if isinstance(gamma_scale, bool) or not isinstance(gamma_scale, (int, float)) or not gamma_scale > 0:
            raise ConfigError(f"`gamma_scale` must be a number > 0; got {gamma_scale!r}.")
        self.drop_prob = float(drop_prob)
        self.block_size = int(block_size)
        self.gamma_scale = float(gamma_scale)

    @override
    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        return drop_block_2d(x, self.drop_prob, self.block_size, self.gamma_scale)

    @override
    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, gamma_scale={self.gamma_scale}"
