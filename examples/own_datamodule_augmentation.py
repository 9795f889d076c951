"""Give your own LightningDataModule our augmentation without replacing it.

Two ways, same effect (augmentation on training batches only, after transfer to the device, with a
different draw per sample; MixUp/CutMix soft targets):

1. the mixin: ``class MyAugmented(AugmentationMixin, MyDataModule)`` and call ``configure_augmentation``;
2. the wrapper: ``with_augmentation(MyDataModule(...), {...}, num_classes=10)`` re-classes an instance.

Run:  python examples/own_datamodule_augmentation.py [--data-dir /work/shared/data]
(uses the real MNIST subset when present, else random images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_reg.data import AugmentationMixin, with_augmentation
from lightning_reg.models import CNNClassifier


class MyDataModule(pl.LightningDataModule):
    """A user's existing DataModule: float images in [0, 1], class-index labels."""

    def __init__(self, data_dir: str | None = None, batch_size: int = 64) -> None:
        super().__init__()
        self.data_dir, self.batch_size = data_dir, batch_size

    def setup(self, stage: str | None = None) -> None:
        raw = Path(self.data_dir or "") / "MNIST" / "raw" / "train-images-idx3-ubyte"
        if raw.is_file():
            from torchvision.datasets import MNIST

            ds = MNIST(self.data_dir, train=True, download=False)
            x, y = ds.data[:2048].unsqueeze(1).float() / 255, ds.targets[:2048]
        else:
            g = torch.Generator().manual_seed(0)
            x, y = torch.rand(512, 1, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
        self.train_set = TensorDataset(x[:-256], y[:-256])
        self.val_set = TensorDataset(x[-256:], y[-256:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


AUGMENT = {
    "rotation_range": 10,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "zoom_range": 0.1,
    "fill_mode": "constant",
    "erasing_prob": 0.25,
    "mixup_alpha": 0.2,
}


class MyAugmentedDataModule(AugmentationMixin, MyDataModule):
    """Way 1: the mixin. Put it first so its on_after_batch_transfer wraps yours."""

    def __init__(self, data_dir: str | None = None, batch_size: int = 64) -> None:
        super().__init__(data_dir, batch_size)
        self.configure_augmentation(AUGMENT, num_classes=10, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    pl.seed_everything(0)
    for dm in (
        MyAugmentedDataModule(args.data_dir),
        with_augmentation(MyDataModule(args.data_dir), AUGMENT, num_classes=10, seed=0),
    ):  # way 2
        # The reference models accept MixUp's soft targets (accepts_soft_targets = True); a module that does
        # not gets a ConfigError before its first training step.
        model = CNNClassifier(
            input_shape=(1, 28, 28),
            num_classes=10,
            conv_channels=[8, 16],
            padding=1,
            pool_after=[0, 1],
            dense_sizes=[32],
        )
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=args.steps,
            limit_val_batches=0,
            enable_progress_bar=False,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=dm)
        checker = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        val = checker.validate(model, datamodule=dm, verbose=False)[0]  # validation batches are not augmented
        print(f"{type(dm).__name__}: val/acc={val['val/acc']:.3f} after {trainer.global_step} augmented steps")


if __name__ == "__main__":
    main()
