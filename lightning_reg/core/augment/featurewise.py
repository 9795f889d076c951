"""Keras-parity dataset statistics: featurewise centre/std and ZCA whitening, fitted once on the training split.

:func:`fit_standardizer` computes the statistics in chunks (float64 accumulation) and returns a
:class:`Standardizer` that applies them to any batch, on any device, for every split alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_reg.core.augment.config import ZCA_FORMULAS
from lightning_reg.errors import ConfigError, check_choice

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


def _second_moment(x: torch.Tensor, d: int) -> torch.Tensor:
    sigma = torch.zeros(d, d, dtype=torch.float64)
    for i in range(0, x.shape[0], CHUNK):
        flat = x[i : i + CHUNK].reshape(-1, d).double()
        sigma += flat.T @ flat
    return sigma / x.shape[0]


def _data_svd(x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and left singular vectors of the ``(d, n)`` data matrix ``X^T`` (what Keras 3 passes
    to ``np.linalg.svd``), without holding ``X`` in float64: a chunked QR ``X = Q R`` keeps the ``(d, d)``
    factor ``R``, and ``R = U' S V^T`` gives ``X^T = V S (Q U')^T``."""
    r: torch.Tensor | None = None
    for i in range(0, x.shape[0], CHUNK):
        block = x[i : i + CHUNK].reshape(-1, d).double()
        r = torch.linalg.qr(block if r is None else torch.cat([r, block]), mode="r")[1]
    assert r is not None
    _, s, vh = torch.linalg.svd(r)
    return vh.T, s


def zca_matrix(x: torch.Tensor, epsilon: float, formula: str = "classic") -> torch.Tensor:
    """The ZCA matrix of the (already centred) flattened images ``x``, by one of two formulas.

    ``classic`` (Keras 2.x, the literature): ``U diag(1/sqrt(lambda + eps)) U^T`` with ``U, lambda`` the
    eigenvectors and eigenvalues of the second moment ``X^T X / n``. ``keras3`` (Keras 3.15's
    ``ImageDataGenerator.fit``): ``U diag(sqrt(n)/(sigma + eps)) U^T`` with ``U, sigma`` the left singular
    vectors and singular values of ``X^T``. Since ``lambda = sigma^2 / n`` the two agree as ``eps -> 0``;
    ``eps`` regularises the variance in one and the data's scale in the other (``keras3``'s ``eps`` is
    ``sqrt(n)`` times smaller in variance terms).

    Needs more images than features (``C*H*W``); otherwise the covariance is singular and the whitening
    would amplify noise by ``1/sqrt(eps)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(500, 1, 2, 2, generator=g) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
        >>> w = zca_matrix(x - x.mean(0), 1e-6)
        >>> z = (x - x.mean(0)).reshape(500, -1) @ w
        >>> torch.allclose(z.T @ z / 500, torch.eye(4), atol=1e-3)
        True
        >>> torch.allclose(zca_matrix(x - x.mean(0), 1e-9, "keras3"), zca_matrix(x - x.mean(0), 1e-9), atol=1e-5)
        True
    """
    check_choice("augment.zca_formula", formula, ZCA_FORMULAS)
    n = x.shape[0]
    d = x[0].numel()
    if n <= d:
        raise ConfigError(
            f"`augment.zca_whitening` needs more training images than features per image (C*H*W = {d}); got "
            f"{n} images. Use more data, smaller images, or turn zca_whitening off."
        )
    if formula == "keras3":
        u, s = _data_svd(x, d)
        return ((u * (n**0.5 / (s + epsilon))) @ u.T).float()
    u, s, _ = torch.linalg.svd(_second_moment(x, d))
    return ((u * (1.0 / torch.sqrt(s + epsilon))) @ u.T).float()


def fit_standardizer(
    x: torch.Tensor,
    center: bool = False,
    std_normalization: bool = False,
    zca: bool = False,
    zca_epsilon: float = 1e-6,
    zca_formula: str = "classic",
    zca_pixel_mean: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Standardizer:
    """Fit the requested statistics on training images ``x`` (given ``mean``/``std`` win over fitted ones).

    ZCA implies centring, as in Keras. It is fitted on the centred (and std-normalized, when requested) data
    with ``zca_formula`` (see :func:`zca_matrix`). With ``zca_pixel_mean`` (our addition; neither Keras does
    it) each pixel's mean is removed first as well, so whitened training data has covariance ~ I even where
    pixel means differ; without it the matrix is the one Keras computes on the same data.

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
        if zca_pixel_mean:
            out.zca_mean = flat.double().mean(0).float()
            flat = flat - out.zca_mean
        out.zca = zca_matrix(flat, zca_epsilon, zca_formula)
    return out
