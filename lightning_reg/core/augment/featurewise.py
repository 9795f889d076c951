"""Keras-parity dataset statistics: featurewise centre/std and ZCA whitening, fitted once on the training split.

:func:`fit_standardizer` computes the statistics in chunks (float64 accumulation) and returns a
:class:`Standardizer` that applies them to any batch, on any device, for every split alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_reg.errors import ConfigError

__all__ = ["Standardizer", "as_float_images", "channel_stats", "fit_standardizer", "zca_matrix"]

CHUNK = 4096


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; floats pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class Standardizer:
    """Applies ``(x - mean) / std`` per channel, then an optional ZCA matrix on the flattened image.

    Example:
        >>> s = Standardizer(mean=torch.tensor([0.5]), std=torch.tensor([0.25]))
        >>> s(torch.full((1, 1, 2, 2), 1.0)).flatten().tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    zca: torch.Tensor | None = None
    zca_mean: torch.Tensor | None = None

    @property
    def is_identity(self) -> bool:
        return self.mean is None and self.std is None and self.zca is None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = x - self.mean.to(x.device, x.dtype).view(1, -1, 1, 1)
        if self.std is not None:
            x = x / self.std.to(x.device, x.dtype).view(1, -1, 1, 1)
        if self.zca is not None:
            shape = x.shape
            flat = x.reshape(shape[0], -1)
            if self.zca_mean is not None:
                flat = flat - self.zca_mean.to(x.device, x.dtype)
            x = (flat @ self.zca.to(x.device, x.dtype)).reshape(shape)
        return x

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("mean", "std", "zca", "zca_mean") if getattr(self, k) is not None}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Standardizer:
        return cls(mean=state.get("mean"), std=state.get("std"), zca=state.get("zca"), zca_mean=state.get("zca_mean"))


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of an ``(N, C, H, W)`` image tensor (uint8 or float), chunked in float64.

    Example:
        >>> m, s = channel_stats(torch.tensor([[[[0.0, 2.0]]]]))
        >>> m.tolist(), s.tolist()
        ([1.0], [1.0])
    """
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in range(0, x.shape[0], CHUNK):
        chunk = as_float_images(x[i : i + CHUNK]).double()
        total += chunk.sum((0, 2, 3))
        sq += (chunk * chunk).sum((0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def zca_matrix(x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Keras' ZCA matrix ``U diag(1/sqrt(s + eps)) U^T`` of the (already centred) flattened images.

    Needs more images than features (``C*H*W``); otherwise the covariance is singular and the whitening
    would amplify noise by ``1/sqrt(eps)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(500, 1, 2, 2, generator=g) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
        >>> w = zca_matrix(x - x.mean(0), 1e-6)
        >>> z = (x - x.mean(0)).reshape(500, -1) @ w
        >>> torch.allclose(z.T @ z / 500, torch.eye(4), atol=1e-3)
        True
    """
    n = x.shape[0]
    d = x[0].numel()
    if n <= d:
        raise ConfigError(
            f"`augment.zca_whitening` needs more training images than features per image (C*H*W = {d}); got "
            f"{n} images. Use more data, smaller images, or turn zca_whitening off."
        )
    sigma = torch.zeros(d, d, dtype=torch.float64)
    for i in range(0, n, CHUNK):
        flat = x[i : i + CHUNK].reshape(-1, d).double()
        sigma += flat.T @ flat
    sigma /= n
    u, s, _ = torch.linalg.svd(sigma)
    return ((u * (1.0 / torch.sqrt(s + epsilon))) @ u.T).float()


def fit_standardizer(
    x: torch.Tensor,
    center: bool = False,
    std_normalization: bool = False,
    zca: bool = False,
    zca_epsilon: float = 1e-6,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Standardizer:
    """Fit the requested statistics on training images ``x`` (given ``mean``/``std`` win over fitted ones).

    ZCA implies centring, as in Keras. It is fitted on the centred (and std-normalized, when requested) data,
    after removing each pixel's mean, so whitened training data has covariance ~ I.

    Example:
        >>> s = fit_standardizer(torch.rand(100, 3, 4, 4), center=True)
        >>> s.mean.shape, s.std is None
        (torch.Size([3]), True)
    """
    c = x.shape[1]
    for name, given in (("mean", mean), ("std", std)):
        if given is not None and len(given) not in (1, c):
            raise ConfigError(f"`{name}` must have 1 or {c} (channel) values; got {list(given)}.")
    if std is not None and any(float(v) <= 0 for v in std):
        raise ConfigError(f"`std` values must be positive; got {list(std)}.")
    need_mean = center or zca or mean is not None
    need_std = std_normalization or std is not None
    # A given mean/std implies its need_*; fitted statistics fill whichever is needed and not given.
    m = torch.tensor([float(v) for v in mean]).expand(c).clone() if mean is not None else None
    s = torch.tensor([float(v) for v in std]).expand(c).clone() if std is not None else None
    if (need_mean and m is None) or (need_std and s is None):
        fitted_mean, fitted_std = channel_stats(x)
        if need_mean and m is None:
            m = fitted_mean
        if need_std and s is None:
            s = fitted_std.clamp_min(1e-7)
    out = Standardizer(mean=m, std=s)
    if zca:
        chunks = [out(as_float_images(x[i : i + CHUNK])) for i in range(0, x.shape[0], CHUNK)]
        flat = torch.cat(chunks).reshape(x.shape[0], -1)
        # Keras whitens the second moment around the per-channel mean; removing the per-pixel mean as well
        # makes the output covariance the identity even where pixel means differ (image borders).
        out.zca_mean = flat.double().mean(0).float()
        out.zca = zca_matrix(flat - out.zca_mean, zca_epsilon)
    return out
