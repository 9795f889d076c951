"""with_folds: any LightningDataModule gains k-fold cross-validation of its training data."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_reg.data import with_folds
from lightning_reg.errors import ConfigError


class UserDM(pl.LightningDataModule):
    """A user's DataModule: 60 samples of 3 classes (labels 0, 1, 2 in turn), batch 8."""

    def __init__(self) -> None:
        super().__init__()
        self.x = torch.arange(60, dtype=torch.float32).unsqueeze(1)
        self.y = torch.arange(60) % 3

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8, shuffle=True)

    def val_dataloader(self):
        raise AssertionError("cross-validation never uses the user's own validation set")


class Seen(pl.LightningModule):
    """Records which samples (their x) it trained and validated on."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 3)
        self.trained: set[int] = set()
        self.validated: set[int] = set()

    def training_step(self, batch, batch_idx):
        self.trained |= {int(v) for v in batch[0].flatten()}
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.validated |= {int(v) for v in batch[0].flatten()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_each_fold_validates_on_its_own_part_of_the_training_data():
    validated = []
    for fold in range(3):
        model = Seen()
        dm = with_folds(UserDM(), fold=fold, num_folds=3, seed=5)
        assert dm.train_dataloader().batch_size == 8, "the user's loader settings are kept"
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0).fit(model, datamodule=dm)  # fmt: skip
        assert model.trained.isdisjoint(model.validated) and len(model.trained | model.validated) == 60
        labels = {x % 3 for x in model.validated}
        assert len(model.validated) == 20 and labels == {0, 1, 2}, "stratified: every class in every fold"
        validated.append(model.validated)
    assert set().union(*validated) == set(range(60)) and sum(len(v) for v in validated) == 60
    again = with_folds(UserDM(), fold=0, num_folds=3, seed=5)
    assert {int(v) for b in again.val_dataloader() for v in b[0].flatten()} == validated[0], "seeded: same partition"


def test_no_fold_leaves_the_datamodule_unchanged_and_bad_folds_are_one_line():
    dm = UserDM()
    assert with_folds(dm) is dm and type(dm) is UserDM
    with pytest.raises(ConfigError, match=r"`fold` must be an integer in \[0, 2\] for num_folds=3; got 3"):
        with_folds(UserDM(), fold=3, num_folds=3)
    with pytest.raises(ConfigError, match=r"`fold` and `num_folds` go together"):
        with_folds(UserDM(), fold=1)


def test_a_seed_that_is_not_an_integer_is_one_line():
    with pytest.raises(ConfigError, match=r"`seed` must be an integer; got 1.5"):
        with_folds(UserDM(), fold=0, num_folds=3, seed=1.5)
