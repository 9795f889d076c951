"""``augment.jsd_splits`` (``augment=augmix_jsd``): split batches from the DataModule and the JSD term on any module."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lightning_reg import AugMixJSD, DigitsDataModule
from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.errors import ConfigError
from lightning_reg.models import MLPClassifier

JSD = {"augment_on": "cpu", "policy": "augmix", "policy_kwargs": {"severity": 3, "mixture_width": 3}, "jsd_splits": 3}
QUIET: dict[str, Any] = dict(
    limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


class Spy(MLPClassifier):
    def __init__(self) -> None:
        super().__init__(input_shape=(1, 8, 8), num_classes=10)
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.hooked: list[int] = []

    def training_step(self, batch, batch_idx):
        self.batches.append((batch[0].clone(), batch[1].clone()))
        self.hooked.append(len(self._forward_hooks))
        return super().training_step(batch, batch_idx)


def test_each_training_batch_holds_the_clean_images_and_two_augmix_views() -> None:
    dm = DigitsDataModule(batch_size=16, augment=JSD)
    dm.setup("fit")
    torch.manual_seed(0)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 1, 8, 8)
    xs, ys = dm.augment_training_batch(x, y)
    assert xs.shape == (48, 1, 8, 8) and torch.equal(ys, y.repeat(3))
    assert not torch.equal(xs[16:32], xs[:16]) and not torch.equal(xs[32:], xs[16:32])
    # the clean split is the stored image (no base augmentation configured)
    clean = torch.stack([dm.data_train.x[i] for i in range(len(dm.data_train))])
    assert any(torch.equal(xs[0], img) for img in clean)


def test_a_fit_adds_the_term_for_the_fit_and_removes_it_after() -> None:
    model = Spy()
    trainer = pl.Trainer(max_steps=2, **QUIET)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16, augment=JSD))
    assert [tuple(b[0].shape) for b in model.batches] == [(48, 1, 8, 8)] * 2
    assert model.hooked == [1, 1]  # the JSD forward hook during training
    assert not model._forward_hooks  # and gone after the fit


def test_the_term_changes_the_update() -> None:
    def step(alpha: float) -> torch.Tensor:
        pl.seed_everything(0)
        model = MLPClassifier(input_shape=(1, 8, 8), num_classes=10)
        pl.Trainer(max_steps=1, **QUIET).fit(
            model, datamodule=DigitsDataModule(batch_size=16, augment={**JSD, "jsd_alpha": alpha})
        )
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert not torch.equal(step(0.0), step(12.0))


def test_the_callback_for_other_data_and_a_mismatch_with_the_datamodule() -> None:
    cb = AugMixJSD(num_splits=2)
    with pytest.raises(ConfigError, match=r"`num_splits`=2 but the DataModule's `augment.jsd_splits` is 3"):
        pl.Trainer(max_steps=1, callbacks=[cb], **QUIET).fit(Spy(), datamodule=DigitsDataModule(augment=JSD))


def test_sixteen_bit_mixed_precision_is_refused() -> None:
    # (on a CPU Lightning turns 16-mixed into bf16-mixed itself, so the check is called directly)
    from lightning_reg.data.augment_mixin import check_jsd_precision

    with pytest.raises(ConfigError, match=r"`precision` 'bf16-mixed' or '32-true'; got '16-mixed'"):
        check_jsd_precision("16-mixed")
    check_jsd_precision("bf16-mixed")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"jsd_splits": 1}, r"`augment.jsd_splits` must be 0 \(off\) or at least 2"),
        ({"jsd_splits": 3}, r"`augment.jsd_splits` needs a `policy`"),
        ({**JSD, "mixup_alpha": 0.2}, r"no MixUp/CutMix"),
    ],
)
def test_bad_jsd_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AugmentConfig(**options)
