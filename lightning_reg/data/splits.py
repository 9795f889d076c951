"""Pure split helpers shared by every DataModule: fractions or counts, seeded and stratified."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lightning_reg.errors import ConfigError

__all__ = ["check_folds", "check_fractions", "kfold_split", "split_train_val", "stratified_split", "val_count"]


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


def stratified_split(labels: torch.Tensor, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
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
            raise ConfigError(
                f"`val_split` must be a fraction in (0, 1) (a float) or a count of images (an int); "
                f"got {val_split!r}. For a count write an integer, e.g. val_split=100."
            )
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


def check_folds(fold: int | None, num_folds: int | None) -> tuple[int, int] | None:
    """Validate a k-fold selection: both ``None`` (no cross-validation), or ``0 <= fold < num_folds``, k ≥ 2.

    Example:
        >>> check_folds(None, None), check_folds(1, 5)
        (None, (1, 5))
    """
    if fold is None and num_folds is None:
        return None
    if fold is None or num_folds is None:
        raise ConfigError(
            f"`fold` and `num_folds` go together (fold i of k for cross-validation); got fold={fold!r}, "
            f"num_folds={num_folds!r}."
        )
    for name, v in (("num_folds", num_folds), ("fold", fold)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"`{name}` must be an integer; got {v!r} ({type(v).__name__}).")
    if num_folds < 2:
        raise ConfigError(f"`num_folds` must be an integer ≥ 2; got {num_folds!r}.")
    if not 0 <= fold < num_folds:
        raise ConfigError(f"`fold` must be an integer in [0, {num_folds - 1}] for num_folds={num_folds}; got {fold!r}.")
    return fold, num_folds


def kfold_split(labels: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded k-fold split: fold ``fold`` validates, the other k − 1 folds train.

    Each class is shuffled with a ``torch.Generator`` seeded by ``seed`` and dealt to the folds in turn, so
    every fold keeps the class balance, the k validation parts are disjoint and together cover every index.

    Example:
        >>> y = torch.tensor([0] * 6 + [1] * 3)
        >>> parts = [kfold_split(y, 3, i, seed=0)[1] for i in range(3)]
        >>> sorted(torch.cat(parts).tolist()) == list(range(9)), [int((y[p] == 1).sum()) for p in parts]
        (True, [1, 1, 1])
    """
    check_folds(fold, num_folds)
    if len(labels) < num_folds:
        raise ConfigError(f"`num_folds` ({num_folds}) must not exceed the {len(labels)} samples to split.")
    gen = torch.Generator().manual_seed(int(seed))
    assignment = torch.empty(len(labels), dtype=torch.long)
    offset = 0
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls, as_tuple=False).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        # Continue dealing where the last class stopped, so small classes do not all start at fold 0.
        assignment[idx] = (torch.arange(len(idx)) + offset) % num_folds
        offset = (offset + len(idx)) % num_folds
    val = torch.nonzero(assignment == fold, as_tuple=False).flatten()
    train = torch.nonzero(assignment != fold, as_tuple=False).flatten()
    return train[torch.randperm(len(train), generator=gen)], val[torch.randperm(len(val), generator=gen)]
