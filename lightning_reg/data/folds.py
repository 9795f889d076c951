"""k-fold cross-validation for any LightningDataModule: fold ``i`` of ``k`` of its training data validates.

:func:`with_folds` re-classes an existing DataModule instance, as :func:`~lightning_reg.data.with_augmentation`
does: its own ``train_dataloader`` still builds the loader, and the wrapper serves the ``k − 1`` training folds from
it and the held-out fold as validation, with the same batch size, workers and collate function. This is what a
sweep's ``hydra.sweeper.folds`` needs from a user's DataModule (the fold and the fold count come as
``hydra.sweeper.keys.fold`` / ``.num_folds``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_reg.data.splits import check_folds, kfold_split
from lightning_reg.errors import ConfigError, check_int

__all__ = ["FoldsMixin", "with_folds"]


def _labels(dataset: Any) -> torch.Tensor:
    """Class labels for a stratified split (``targets``, a TensorDataset's second tensor, or each item's label);
    zeros (a plain seeded split) where the items carry no integer label."""
    targets = getattr(dataset, "targets", None)
    if targets is None and hasattr(dataset, "tensors") and len(dataset.tensors) > 1:
        targets = dataset.tensors[1]
    if targets is not None:
        t = torch.as_tensor(targets)
        if t.ndim == 1 and not t.is_floating_point():
            return t.long()
    labels = []
    for i in range(len(dataset)):
        item = dataset[i]
        label = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None
        if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool):
            return torch.zeros(len(dataset), dtype=torch.long)
        labels.append(label)
    return torch.tensor(labels, dtype=torch.long)


def _like(loader: DataLoader, dataset: Dataset, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        shuffle=shuffle,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


class FoldsMixin:
    """Serves fold ``fold`` of ``num_folds`` of the training data as validation, the other folds as training.

    Set by :func:`with_folds`; the split is stratified by class where the items carry integer labels, and seeded
    (``fold_seed``), so every fold's job of a trial sees the same partition.
    """

    fold: int
    num_folds: int
    fold_seed: int

    def _fold_loaders(self) -> tuple[DataLoader, DataLoader]:
        loader = super().train_dataloader()  # type: ignore[misc]  # the user's class, after this mixin
        if not isinstance(loader, DataLoader):
            raise ConfigError(
                f"with_folds needs {type(self).__name__}.train_dataloader to return one DataLoader; got "
                f"{type(loader).__name__}."
            )
        dataset = loader.dataset
        train_idx, val_idx = kfold_split(_labels(dataset), self.num_folds, self.fold, self.fold_seed)
        return _like(loader, Subset(dataset, train_idx.tolist()), True), _like(
            loader, Subset(dataset, val_idx.tolist()), False
        )

    def train_dataloader(self) -> DataLoader:
        return self._fold_loaders()[0]

    def val_dataloader(self) -> DataLoader:
        return self._fold_loaders()[1]


def with_folds(
    datamodule: pl.LightningDataModule, fold: int | None = None, num_folds: int | None = None, seed: int = 0
) -> pl.LightningDataModule:
    """Give an existing DataModule instance k-fold cross-validation; ``fold=None``: unchanged.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class DM(pl.LightningDataModule):
        ...     def train_dataloader(self):
        ...         return DataLoader(TensorDataset(torch.randn(30, 2), torch.arange(30) % 3), batch_size=4)
        >>> dm = with_folds(DM(), fold=1, num_folds=3)
        >>> len(dm.train_dataloader().dataset), len(dm.val_dataloader().dataset)
        (20, 10)
    """
    seed = check_int("seed", seed)
    if check_folds(fold, num_folds) is None:
        return datamodule
    if not isinstance(datamodule, pl.LightningDataModule):
        raise ConfigError(f"`datamodule` must be a LightningDataModule; got {type(datamodule).__name__}.")
    if isinstance(datamodule, FoldsMixin):
        raise ConfigError(f"{type(datamodule).__name__} already serves folds; wrap it once.")
    base = type(datamodule)
    datamodule.__class__ = type(f"Folded{base.__name__}", (FoldsMixin, base), {})
    folded: Any = datamodule
    folded.fold, folded.num_folds, folded.fold_seed = fold, num_folds, seed
    return datamodule
