"""LabelSmoothing (callback) and ``augment.label_smoothing`` (DataModule): the targets the training step sees."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from lightning_reg import DigitsDataModule, LabelSmoothing
from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.mixers import mix_batch, one_hot_smooth, smooth_labels
from lightning_reg.errors import ConfigError
from lightning_reg.models import MLPClassifier

from helpers import TinyModule, fit

QUIET: dict[str, Any] = dict(
    limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


class SoftTiny(TinyModule):
    """The helpers' module, declaring what its F.cross_entropy already does: it takes probability targets."""

    accepts_soft_targets = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: list[torch.Tensor] = []
        self.seen_val: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[1].clone())
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen_val.append(batch[1].clone())
        return super().validation_step(batch, batch_idx)


def test_training_steps_see_smoothed_targets_and_validation_the_hard_labels() -> None:
    model = SoftTiny()
    fit(model, LabelSmoothing(0.2, num_classes=4), max_epochs=1)
    assert len(model.seen) == 8
    for y in model.seen:
        assert y.shape == (32, 4) and y.dtype == torch.float32
        assert torch.allclose(y.sum(1), torch.ones(32))
        assert torch.unique(y).tolist() == pytest.approx([0.05, 0.85])
    assert all(not y.is_floating_point() for y in model.seen_val)


def test_the_smoothing_follows_its_schedule_by_step() -> None:
    model = SoftTiny()
    cb = LabelSmoothing({"name": "linear", "start": 0.0, "end": 0.4, "end_at": 8}, num_classes=4)
    fit(model, cb, max_epochs=1)
    top = [float(y.max()) for y in model.seen]
    expected = [1.0 - 0.4 * s / 8 + 0.4 * s / 8 / 4 for s in range(8)]
    assert top == pytest.approx(expected)


def test_num_classes_comes_from_the_datamodule_when_not_given() -> None:
    cb = LabelSmoothing(0.1)
    trainer = pl.Trainer(max_steps=1, callbacks=[cb], **QUIET)
    trainer.fit(MLPClassifier(input_shape=(1, 8, 8)), datamodule=DigitsDataModule(batch_size=32))
    assert cb.run_summary()["num_classes"] == 10 and cb.run_summary()["final_smoothing"] == 0.1


def test_a_module_without_soft_targets_fails_before_training() -> None:
    model = TinyModule()
    with pytest.raises(ConfigError, match=r"TinyModule does not declare `accepts_soft_targets = True`"):
        fit(model, LabelSmoothing(0.1, num_classes=4), max_epochs=1)


def test_smoothing_set_on_the_datamodule_and_as_a_callback_is_refused() -> None:
    dm = DigitsDataModule(augment={"label_smoothing": 0.1})
    trainer = pl.Trainer(max_steps=1, callbacks=[LabelSmoothing(0.1)], **QUIET)
    with pytest.raises(ConfigError, match="label smoothing is set twice"):
        trainer.fit(MLPClassifier(input_shape=(1, 8, 8)), datamodule=dm)


def test_a_tuple_batch_is_refused_with_the_reason() -> None:
    cb = LabelSmoothing(0.1, num_classes=4)
    with pytest.raises(ConfigError, match="needs a list"):
        cb.smooth((torch.zeros(2, 3), torch.tensor([0, 1])), 0, 0)


def test_augment_label_smoothing_alone_acts_on_the_training_batches() -> None:
    dm = DigitsDataModule(augment={"label_smoothing": 0.1})
    x, y = dm.augment_training_batch(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert torch.allclose(y, one_hot_smooth(torch.tensor([0, 1, 2, 3]), 10, 0.1))
    assert torch.allclose(y[0, :2], torch.tensor([0.91, 0.01]))


def test_a_run_with_only_augment_label_smoothing_trains_on_soft_targets() -> None:
    seen: list[torch.Tensor] = []

    class Spy(MLPClassifier):
        def training_step(self, batch, batch_idx):
            seen.append(batch[1])
            return super().training_step(batch, batch_idx)

    dm = DigitsDataModule(augment={"label_smoothing": 0.1}, batch_size=32)
    trainer = pl.Trainer(max_steps=2, **QUIET)
    trainer.fit(Spy(input_shape=(1, 8, 8)), datamodule=dm)
    assert len(seen) == 2 and all(y.shape == (32, 10) and float(y.max()) == pytest.approx(0.91) for y in seen)


def test_smoothing_mixed_targets_equals_smoothing_before_mixing_as_timm_does() -> None:
    y = torch.tensor([0, 3, 1, 2, 2, 0])
    x = torch.rand(6, 1, 8, 8)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731 - the same draws twice
    _, smoothed_first, _ = mix_batch(x, y, 4, AugmentConfig(mixup_alpha=0.4, label_smoothing=0.2), gen())
    _, hard_mixed, _ = mix_batch(x, y, 4, AugmentConfig(mixup_alpha=0.4), gen())
    assert torch.allclose(smooth_labels(hard_mixed, 4, 0.2), smoothed_first, atol=1e-6)


def test_the_loss_on_smoothed_targets_is_torchs_label_smoothing_loss() -> None:
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (16,), generator=torch.Generator().manual_seed(1))
    ours = F.cross_entropy(logits, smooth_labels(y, 5, 0.1))
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, label_smoothing=0.1))


@pytest.mark.parametrize("bad", [torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 5)])
def test_targets_of_the_wrong_shape_are_refused(bad: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="label smoothing needs"):
        smooth_labels(bad, 4, 0.1)
