"""scikit-learn's 8x8 digits as an in-memory LightningDataModule (the embedded default data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.cpu import build_train_transform
from lightning_reg.data.augment_mixin import AugmentationMixin
from lightning_reg.data.splits import check_folds, check_fractions, kfold_split, stratified_split
from lightning_reg.data.vision import ImageTensorDataset
from lightning_reg.errors import ConfigError, check_bool, check_int

__all__ = ["DigitsDataModule"]


class DigitsDataModule(AugmentationMixin, pl.LightningDataModule):
    """scikit-learn's digits (1,797 images, 10 classes) as ``1x8x8`` float tensors in ``[0, 1]``.

    The data ships inside scikit-learn, so nothing is downloaded. The whole set lives in memory as
    tensors, split train/val/test by seeded, stratified fractions. ``train_subset`` keeps only the
    first N training images (still stratified) so that overfitting is easy to see.

    Args:
        train_fraction, val_fraction, test_fraction: split fractions, each in (0, 1), summing to 1.
        batch_size: training and evaluation batch size.
        eval_batch_size: validation and test batch size, if other than ``batch_size``. Evaluation keeps no
            activations for backward, so larger batches only save per-batch overhead (the epoch-level metrics are
            means weighted by batch size: the same up to float rounding).
        num_workers: DataLoader workers.
        seed: seed for the split (independent of the training seed).
        train_subset: if set, use only this many training images.
        normalize: subtract the training split's mean and divide by its std.
        augment: the augmentation block (:class:`~lightning_reg.core.augment.AugmentConfig` or a mapping) for
            training batches. ``normalize`` is applied to the stored tensors, so with it on, augmentation
            (brightness clipping, fill values) acts on normalized pixels.
        fold, num_folds: k-fold cross-validation: the train and val fractions are pooled and split into
            ``num_folds`` stratified, seeded folds; fold ``fold`` validates and the rest train. The test
            fraction is untouched. Both ``None`` (the default): the fixed split.

    Example:
        >>> dm = DigitsDataModule(batch_size=64, seed=0)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape[1:]), y.dtype
        ((1, 8, 8), torch.int64)
    """

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(
        self,
        train_fraction: float = 0.6,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        train_subset: int | None = None,
        normalize: bool = False,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        fold: int | None = None,
        num_folds: int | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        check_fractions(train_fraction, val_fraction, test_fraction)
        self.folds = check_folds(fold, num_folds)
        check_int("batch_size", batch_size, low=1)
        if eval_batch_size is not None:
            check_int("eval_batch_size", eval_batch_size, low=1)
        check_int("num_workers", num_workers, low=0)
        check_int("seed", seed)
        check_bool("normalize", normalize)
        if train_subset is not None:
            check_int("train_subset", train_subset, low=10)
        self.save_hyperparameters(ignore=["augment"])
        self.configure_augmentation(augment, num_classes=self.num_classes, seed=seed)
        self.fractions = (float(train_fraction), float(val_fraction), float(test_fraction))
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_subset = train_subset
        self.normalize = normalize
        self.data_train: ImageTensorDataset | None = None
        self.data_val: ImageTensorDataset | None = None
        self.data_test: ImageTensorDataset | None = None

    @staticmethod
    def load_arrays() -> tuple[torch.Tensor, torch.Tensor]:
        """Return all 1,797 images as ``(N, 1, 8, 8)`` floats in [0, 1] and their labels."""
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.as_tensor(bunch.target, dtype=torch.long)
        return x, y

    @override
    def setup(self, stage: str | None = None) -> None:
        self.check_soft_targets()
        if self.data_train is not None:
            return
        x, y = self.load_arrays()
        tr, va, te = stratified_split(y, self.fractions, self.seed)
        if self.folds is not None:
            # k-fold cross-validation over the train and val parts together; the test part is untouched.
            pool = torch.cat([tr, va])
            ktr, kva = kfold_split(y[pool], self.folds[1], self.folds[0], self.seed)
            tr, va = pool[ktr], pool[kva]
        if self.train_subset is not None:
            if self.train_subset > len(tr):
                raise ConfigError(
                    f"`train_subset` must be at most the training split size {len(tr)}; got {self.train_subset}."
                )
            keep = stratified_split(y[tr], [self.train_subset, len(tr) - self.train_subset], self.seed)[0]
            tr = tr[keep]
        if self.normalize:
            mean, std = x[tr].mean(), x[tr].std()
            x = (x - mean) / std
        if self.augment_config.has_standardization:
            self.fit_standardization(x[tr])
        transform = None
        if self.augment_config.augment_on == "cpu" and not self.augment_config.is_identity:
            transform = build_train_transform(self.augment_config, 8, 8)
        self.data_train = ImageTensorDataset(x[tr], y[tr], transform)
        self.data_val = ImageTensorDataset(x[va], y[va])
        self.data_test = ImageTensorDataset(x[te], y[te])

    def _loader(self, ds: ImageTensorDataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("DigitsDataModule.setup() must run before asking for a dataloader.")
        return DataLoader(
            ds,
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, shuffle=False)
