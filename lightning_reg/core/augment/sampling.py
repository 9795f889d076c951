"""Seeded draws the batched augmentations share (MixUp's and CutMix's Beta, AugMix's Dirichlet)."""

from __future__ import annotations

import torch

__all__ = ["sample_gamma"]


def sample_gamma(
    shape: tuple[int, ...], alpha: float, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Gamma(alpha, 1) draws from a seeded generator (Marsaglia-Tsang; ``torch.distributions`` takes none).

    Example:
        >>> g = sample_gamma((20000,), 2.0, torch.Generator().manual_seed(0))
        >>> abs(g.mean().item() - 2.0) < 0.05
        True
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(shape, device=device)
    todo = torch.ones(shape, dtype=torch.bool, device=device)
    while bool(todo.any()):
        z = torch.randn(shape, generator=generator, device=device)
        u = torch.rand(shape, generator=generator, device=device)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    if boost:
        u = torch.rand(shape, generator=generator, device=device)
        out = out * u.clamp_min(1e-30) ** (1.0 / alpha)
    return out
