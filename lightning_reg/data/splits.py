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


def val_count(val_split: float | int, n: int) -> int:
    """Number of validation samples for ``val_split``: a fraction in (0, 1) or a count in [1, n - 1].

    Example:
        >>> val_count(0.1, 1000), val_count(50, 1000)
        (100, 50)
    """
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise ConfigError(f"`val_split` must be a fraction in (0, 1) or a count of images; got {val_split!r}.")
    if isinstance(val_split, float):
        # A float is a fraction, never a count: 1.0 would otherwise mean "one validation image".
        if not 0.0 < val_split < 1.0:
            raise ConfigError(f"`val_split` must be a fraction in (0, 1) (a float) or a count of images (an int); "
                              f"got {val_split!r}. For a count write an integer, e.g. val_split=100.")
        k = int(round(val_split * n))
    else:
        k = int(val_split)
    if not 1 <= k <= n - 1:
        raise ConfigError(
            f"`val_split` must leave at least one image in each of train and val ({n} available); got {val_split!r}."
        )
    return k


def split_train_val(labels: torch.Tensor, val_split: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, stratified train/val index split with exactly ``val_count(val_split, n)`` validation samples.

    Each class gives its proportional share (largest remainders get the leftover slots), shuffled with a
    ``torch.Generator`` seeded by ``seed``.

    Example:
        >>> tr, va = split_train_val(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 4, seed=0)
        >>> len(tr), len(va), sorted(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])[va].tolist())
        (4, 4, [0, 0, 1, 1])
    """
    n = len(labels)
    k = val_count(val_split, n)
    gen = torch.Generator().manual_seed(int(seed))
    classes, counts = torch.unique(labels, return_counts=True)
    share = counts.double() * k / n
    take = share.floor().long()
    leftover = k - int(take.sum())
    if leftover:
        order = torch.argsort(share - take.double(), descending=True, stable=True)
        take[order[:leftover]] += 1
    train_parts, val_parts = [], []
    for cls, t in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(labels == cls, as_tuple=False).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val_parts.append(idx[:t])
        train_parts.append(idx[t:])
    tr, va = torch.cat(train_parts), torch.cat(val_parts)
    return tr[torch.randperm(len(tr), generator=gen)], va[torch.randperm(len(va), generator=gen)]
