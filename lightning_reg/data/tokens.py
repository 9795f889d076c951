"""A synthetic token-classification DataModule, so text models run through the entry point without downloads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from lightning_reg.errors import ConfigError, check_int

__all__ = ["SyntheticTokensDataModule"]


class SyntheticTokensDataModule(pl.LightningDataModule):
    """Random token sequences whose label is which of ``num_classes`` equal parts of the vocabulary the first
    token falls in: learnable, seeded, and nothing to download. Token 0 is kept for padding.

    ``num_classes`` and ``vocab_size`` are read by the entry point and the model config
    (``model=hf_bert_tiny``), as ``num_classes`` and ``input_shape`` are for the image sets.

    Args:
        vocab_size: token ids are drawn from ``1 .. vocab_size - 1``.
        length: tokens per sequence.
        num_classes: classes (parts of the vocabulary).
        n_train, n_val, n_test: split sizes (independent draws).
        batch_size: DataLoader batch size.
        seed: seeds the draws.
        augment: image augmentation does not apply to tokens; only the "off" config (``augment=none``, which
            the entry point always passes) is accepted.

    Example:
        >>> dm = SyntheticTokensDataModule(n_train=64, n_val=16, n_test=16)
        >>> dm.setup("fit")
        >>> ids, y = next(iter(dm.train_dataloader()))
        >>> ids.shape, int(ids.min()) >= 1, int(y.max()) < dm.num_classes
        (torch.Size([32, 16]), True, True)
    """

    def __init__(
        self,
        vocab_size: int = 96,
        length: int = 16,
        num_classes: int = 3,
        n_train: int = 2048,
        n_val: int = 512,
        n_test: int = 512,
        batch_size: int = 32,
        seed: int = 0,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if augment is not None:
            from lightning_reg.core.augment import AugmentConfig

            cfg = AugmentConfig.from_any(augment)
            if not cfg.is_identity or cfg.has_soft_targets:
                off = AugmentConfig()
                on = {k: v for k, v in dict(augment).items() if getattr(off, k, v) != v}
                raise ConfigError(
                    "`augment` transforms images; SyntheticTokensDataModule has token ids. Use "
                    f"augment=none (label smoothing: the LabelSmoothing callback); got an augmentation that is on: {on!r}."
                )
        check_int("vocab_size", vocab_size, low=3)
        check_int("length", length, low=1)
        check_int("num_classes", num_classes, low=2)
        if num_classes >= vocab_size:
            raise ConfigError(f"`num_classes` must be below `vocab_size` ({vocab_size}); got {num_classes}.")
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("batch_size", batch_size)):
            check_int(name, value, low=1)
        check_int("seed", seed)
        self.vocab_size, self.length, self.num_classes = vocab_size, length, num_classes
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.batch_size, self.seed = batch_size, seed
        self.data: dict[str, TensorDataset] = {}

    def _draw(self, n: int, offset: int) -> TensorDataset:
        g = torch.Generator().manual_seed(self.seed * 1000 + offset)
        ids = torch.randint(1, self.vocab_size, (n, self.length), generator=g)
        return TensorDataset(ids, (ids[:, 0] * self.num_classes) // self.vocab_size)

    @override
    def setup(self, stage: str | None = None) -> None:
        if not self.data:
            self.data = {split: self._draw(n, i) for i, (split, n) in enumerate(self.sizes.items())}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.data:
            raise RuntimeError("SyntheticTokensDataModule.setup() must run before asking for a dataloader.")
        return DataLoader(self.data[split], batch_size=self.batch_size, shuffle=shuffle)

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
