"""An existing Lightning project that gains regularization without a single change to its model or data code.

``DigitsClassifier`` and ``DigitsData`` below are written the way users write them and know nothing of
lightning_reg. ``regularize()`` is everything the project adds: callbacks for the trainer and a wrapped
DataModule. It adds

- L2 on the kernels (``WeightPenalty``),
- dropout, injected after every ReLU (the model has none) with a rate that warms up linearly
  (``ScheduledDropout``),
- early stopping that puts the best epoch's weights back (``EarlyStopping(restore_best_weights=True)``),
- on-device augmentation of the training batches (``with_augmentation`` re-classes the DataModule
  instance; validation batches are untouched),
- exact resume (``RNGState``).

Run:  python examples/existing_project.py [--max-epochs 40] [--no-regularization]
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


# ----------------------------------------------------------------------------- the user's code, unchanged
class DigitsClassifier(pl.LightningModule):
    """A plain MLP for 8x8 digits with its own optimizer: no dropout, no weight decay."""

    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=stage == "val")
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class DigitsData(pl.LightningDataModule):
    """scikit-learn's digits as (N, 1, 8, 8) floats in [0, 1]; a small training set so that it overfits."""

    def __init__(self, batch_size: int = 32, n_train: int = 300, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.n_train, self.seed = batch_size, n_train, seed

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        train, val, test = order[: self.n_train], order[self.n_train : self.n_train + 500], order[-500:]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


# ----------------------------------------------------------------------------- what the project adds
def regularize(
    datamodule: pl.LightningDataModule, max_epochs: int, patience: int = 5
) -> tuple[list[pl.Callback], pl.LightningDataModule]:
    """Callbacks to add to the Trainer and the DataModule to train on, with our regularization."""
    from lightning_reg import EarlyStopping, RNGState, ScheduledDropout, WeightPenalty
    from lightning_reg.core.schedules import Linear
    from lightning_reg.data import with_augmentation

    callbacks: list[pl.Callback] = [
        WeightPenalty(l2=1e-4),
        ScheduledDropout(Linear(start=0.0, end=0.3, end_at=max(1, max_epochs // 2), unit="epoch"), inject=["ReLU"]),
        EarlyStopping("val/loss", mode="min", patience=patience, restore_best_weights=True),
        RNGState(),
    ]
    augmented = with_augmentation(
        datamodule,
        {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 0.1, "zoom_range": 0.1},
        seed=0,
    )
    return callbacks, augmented


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train with (or, with ``--no-regularization``, without) our additions; return the test metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--limit-train-batches", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-regularization", action="store_true")
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed, workers=True)
    model, data = DigitsClassifier(), DigitsData(seed=args.seed)
    callbacks: list[pl.Callback] = []
    if not args.no_regularization:
        callbacks, data = regularize(data, args.max_epochs, args.patience)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=args.max_epochs,
        limit_train_batches=args.limit_train_batches,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, datamodule=data)
    test = trainer.test(model, datamodule=data, verbose=False)[0]
    result = {
        "test": test,
        "epochs": trainer.current_epoch,
        "callbacks": {},
        "trainer": trainer,
        "model": model,
        "datamodule": data,
    }
    for cb in callbacks:
        summary = getattr(cb, "run_summary", None)
        if callable(summary):
            result["callbacks"][type(cb).__name__] = summary()
    print(
        f"{'baseline' if args.no_regularization else 'regularized'}: test/acc={test['test/acc']:.4f} "
        f"test/loss={test['test/loss']:.4f} after {trainer.current_epoch} epochs"
    )
    return result


if __name__ == "__main__":
    main()
