"""Pure split helpers shared by every DataModule: fractions or counts, seeded and stratified."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lightning_reg.errors import ConfigError


def check_fractions(train: float, val: float, test: float) -> None:
    """Validate split fractions: each in (0, 1) and summing to 1.

    Example:
        >>> check_fractions(0.6, 0.2, 0.2)
    """
    for name, v in (("train_fraction", train), ("val_fraction", val), ("test_fraction", test)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
            raise ConfigError(f"`{name}` must be a number in the open interval (0, 1); got {v!r}.")
    total = float(train) + float(val) + float(test)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(
            "`train_fraction + val_fraction + test_fraction` must equal 1; "
            f"got {train!r} + {val!r} + {test!r} = {total:.6g}."
        )


def stratified_split(
    labels: torch.Tensor, fractions: Sequence[float], seed: int
) -> list[torch.Tensor]:
    """Split indices into len(fractions) parts, class by class, with a seeded permutation.

    Each class is shuffled with ``torch.Generator().manual_seed(seed)`` and cut by the fractions, so
    every part keeps the class balance of the whole and the split does not depend on global RNG state.

    Example:
        >>> parts = stratified_split(torch.tensor([0, 0, 1, 1]), [0.5, 0.5], seed=0)
        >>> sorted(torch.cat(parts).tolist())
        [0, 1, 2, 3]
    """
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    cum = torch.tensor([0.0, *fractions]).cumsum(0)
    cum = cum / cum[-1]
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls, as_tuple=False).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = torch.round(cum * len(idx)).long().tolist()
        for k in range(len(fractions)):
            parts[k].append(idx[bounds[k] : bounds[k + 1]])
    out = []
    for chunks in parts:
        cat = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)
        out.append(cat[torch.randperm(len(cat), generator=gen)])
    return out
