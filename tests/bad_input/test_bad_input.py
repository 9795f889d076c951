"""One table of bad arguments and configs across the public classes and the train entry point.

Every case must raise :class:`~lightning_reg.errors.ConfigError` (a ``ValueError``) before any training step,
with a message that names the option and shows the value given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from torch.optim.lr_scheduler import StepLR

from lightning_reg import (
    ActivityRegularization,
    AtomicModelCheckpoint,
    AugmentConfig,
    AugMixJSD,
    CIFAR10DataModule,
    Constant,
    DigitsDataModule,
    Early,
    EarlyStopping,
    LabelSmoothing,
    Linear,
    MaxNorm,
    Milestones,
    MinMaxNorm,
    MNISTDataModule,
    NonNeg,
    PenaltyLossMixin,
    ScheduledDropout,
    UnitNorm,
    WeightPenalty,
    make_schedule,
)
from lightning_reg.callbacks.monitor_check import MonitorCheck
from lightning_reg.data import SyntheticTokensDataModule, with_augmentation
from lightning_reg.errors import ConfigError
from lightning_reg.models import CNNClassifier, MLPClassifier
from lightning_reg.optim import SchedulerSpec

from helpers import TinyModule, loaders
from helpers import fit as shared_fit


class StepSpy(pl.Callback):
    """Records whether a training step started."""

    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_start(self, *args: Any) -> None:
        self.steps += 1


def fit_with(*callbacks: pl.Callback) -> Callable[[], None]:
    """A fit that must fail before its first step (the spy checks that it did)."""

    def run() -> None:
        spy = StepSpy()
        try:  # Lightning's sanity validation (2 batches) runs: errors found there count as before training too
            shared_fit(TinyModule(), *callbacks, spy, max_epochs=1, data=loaders(64), num_sanity_val_steps=2)
        finally:
            assert spy.steps == 0, "a training step ran before the error"

    return run


class PenalizedModule(PenaltyLossMixin, TinyModule):
    pass


@dataclass
class Bad:
    id: str
    call: Callable[[], Any] | tuple[str, ...]  # a callable, or overrides for the train entry point
    option: str
    shown: str


CASES: list[Bad] = [
    # WeightPenalty
    Bad("penalty-l2-negative", lambda: WeightPenalty(l2=-1.0), "l2", "-1.0"),
    Bad("penalty-l1-string", lambda: WeightPenalty(l1="a"), "l1", "'a'"),
    Bad("penalty-mode", lambda: WeightPenalty(l2=1e-4, mode="weird"), "mode", "'weird'"),
    Bad("penalty-proximal-without-l1", lambda: WeightPenalty(l2=1e-4, mode="proximal"), "l1", "l1=0.0"),
    Bad("penalty-log-every", lambda: WeightPenalty(l2=1e-4, log_every_n_steps=-1), "log_every_n_steps", "-1"),
    Bad("penalty-group-key", lambda: WeightPenalty(l2=1e-4, groups={"net.*": {"l3": 1.0}}), "groups", "l3"),
    Bad("penalty-include-type", lambda: WeightPenalty(l2=1e-4, include=[3]), "include", "3"),
    Bad("penalty-schedule-name", lambda: WeightPenalty(l2=1e-4, schedule={"name": "nope"}), "schedule.name", "'nope'"),
    Bad("penalty-empty-selection", fit_with(WeightPenalty(l2=1e-4, include=["nothing.*"])), "include", "nothing.*"),
    # LabelSmoothing
    Bad("label-smoothing-one", lambda: LabelSmoothing(1.0), "smoothing", "1.0"),
    Bad("label-smoothing-classes", lambda: LabelSmoothing(0.1, num_classes=1), "num_classes", "1"),
    Bad("label-smoothing-target", lambda: LabelSmoothing(0.1, target=1.5), "target", "1.5"),
    Bad(
        "label-smoothing-hard-loss", fit_with(LabelSmoothing(0.1, num_classes=4)), "accepts_soft_targets", "TinyModule"
    ),
    Bad("augmix-jsd-splits", lambda: AugMixJSD(num_splits=1), "num_splits", "1"),
    Bad("augmix-jsd-alpha", lambda: AugMixJSD(alpha=-1.0), "alpha", "-1.0"),
    Bad("augment-jsd-splits", lambda: AugmentConfig(jsd_splits=-2), "augment.jsd_splits", "-2"),
    Bad("augment-jsd-without-policy", lambda: AugmentConfig(jsd_splits=3), "augment.jsd_splits", "policy=None"),
    Bad("augment-label-smoothing", lambda: AugmentConfig(label_smoothing=1.2), "augment.label_smoothing", "1.2"),
    Bad(
        "tokens-label-smoothing", lambda: SyntheticTokensDataModule(augment={"label_smoothing": 0.1}), "augment", "0.1"
    ),
    # MaxNorm
    Bad("maxnorm-zero", lambda: MaxNorm(0.0), "max_norm", "0.0"),
    Bad("maxnorm-negative", lambda: MaxNorm(-2), "max_norm", "-2"),
    Bad("maxnorm-log-every-float", lambda: MaxNorm(3.0, log_every_n_steps=1.5), "log_every_n_steps", "1.5"),
    # The Keras constraints, the orthogonal regularizer, a penalty rule and the bias option
    Bad("minmaxnorm-negative-min", lambda: MinMaxNorm(min_value=-1.0), "min_value", "-1.0"),
    Bad("minmaxnorm-min-above-max", lambda: MinMaxNorm(min_value=2.0, max_value=1.0), "min_value", "2.0"),
    Bad("minmaxnorm-rate", lambda: MinMaxNorm(rate=1.5), "rate", "1.5"),
    Bad("minmaxnorm-axis", lambda: MinMaxNorm(axis="rows"), "axis", "'rows'"),
    Bad("unitnorm-axis", lambda: UnitNorm(axis=[0.5]), "axis", "[0.5]"),
    Bad("nonneg-include", lambda: NonNeg(include=[3]), "include", "3"),
    Bad("nonneg-empty-selection", fit_with(NonNeg(include=["nothing.*"])), "include", "nothing.*"),
    Bad(
        "orthogonal-mode",
        lambda: WeightPenalty(rule={"name": "orthogonal", "factor": 0.01, "mode": "diagonal"}),
        "mode",
        "'diagonal'",
    ),
    Bad("orthogonal-factor", lambda: WeightPenalty(rule={"name": "orthogonal", "factor": -1}), "factor", "-1"),
    Bad("penalty-rule-name", lambda: WeightPenalty(rule={"name": "nope"}), "rule.name", "'nope'"),
    Bad("penalty-rule-argument", lambda: WeightPenalty(rule={"name": "unit_norm", "radius": 2}), "rule", "radius"),
    Bad(
        "penalty-rule-with-l2",
        lambda: WeightPenalty(l2=1e-4, rule={"name": "decoupled", "l2": 1e-4}),
        "rule",
        "l2=0.0001",
    ),
    Bad("penalty-bias-key", lambda: WeightPenalty(l2=1e-4, bias={"l3": 1.0}), "bias", "l3"),
    Bad("activity-l1-negative", lambda: ActivityRegularization(l1=-1.0), "l1", "-1.0"),
    Bad("activity-modules-type", lambda: ActivityRegularization(l2=1.0, modules=[3]), "modules", "3"),
    Bad("activity-modules-empty", lambda: ActivityRegularization(l2=1.0, modules=[]), "modules", "[]"),
    Bad(
        "activity-modules-match-nothing",
        fit_with(ActivityRegularization(l2=1.0, modules=["Conv2d"])),
        "modules",
        "Conv2d",
    ),
    Bad("penalty-bias-negative", lambda: WeightPenalty(l2=1e-4, bias={"l2": -1.0}), "bias.l2", "-1.0"),
    # ScheduledDropout
    Bad("dropout-rate-one", lambda: ScheduledDropout(1.0), "schedule", "1.0"),
    Bad("dropout-rate-negative", lambda: ScheduledDropout(-0.1), "schedule", "-0.1"),
    Bad(
        "dropout-linear-above-one",
        lambda: ScheduledDropout({"name": "linear", "start": 0.0, "end": 1.5, "end_at": 10}),
        "schedule",
        "1.5",
    ),
    Bad("dropout-interval", lambda: ScheduledDropout(0.1, interval="batch"), "interval", "'batch'"),
    Bad("dropout-schedule-function-without-argument", lambda: ScheduledDropout(lambda: 0.1), "schedule", "<lambda>"),
    Bad("dropout-depth-scale", lambda: ScheduledDropout(0.1, depth_scale="yes"), "depth_scale", "'yes'"),
    Bad(
        "dropout-skip-last-without-inject",
        lambda: ScheduledDropout(0.1, inject_skip_last=True),
        "inject",
        "inject=None",
    ),
    Bad("dropout-log-name", lambda: ScheduledDropout(0.1, log_name=""), "log_name", "''"),
    Bad("dropout-modules-entry", lambda: ScheduledDropout(0.1, modules=[3]), "modules", "3"),
    Bad("dropout-schedule-name", lambda: ScheduledDropout({"name": "nope"}), "schedule", "'nope'"),
    Bad("dropout-inject-type-absent", fit_with(ScheduledDropout(0.1, inject=["GELU"])), "inject", "GELU"),
    Bad(
        "dropout-inject-kind",
        lambda: ScheduledDropout(0.1, inject=["ReLU"], inject_kind="noise"),
        "inject_kind",
        "'noise'",
    ),
    Bad(
        "dropout-inject-kind-without-inject",
        lambda: ScheduledDropout(0.1, inject_kind="dropblock"),
        "inject_kind",
        "None",
    ),
    Bad(
        "dropout-inject-options-kind",
        lambda: ScheduledDropout(0.1, inject=["ReLU"], inject_options={"block_size": 3}),
        "inject_options",
        "block_size",
    ),
    Bad(
        "dropblock-block-size",
        lambda: ScheduledDropout(0.1, inject=["ReLU"], inject_kind="dropblock", inject_options={"block_size": 0}),
        "block_size",
        "0",
    ),
    # EarlyStopping
    Bad("es-monitor-empty", lambda: EarlyStopping(""), "monitor", "''"),
    Bad("es-patience-negative", lambda: EarlyStopping("val/loss", patience=-1), "patience", "-1"),
    Bad("es-mode", lambda: EarlyStopping("val/loss", mode="up"), "mode", "got up"),  # Lightning's wording
    Bad("es-criterion", lambda: EarlyStopping("val/loss", criterion="XX"), "criterion", "'XX'"),
    Bad("es-gl-without-alpha", lambda: EarlyStopping("val/loss", criterion="GL"), "alpha", "None"),
    Bad("es-up-without-s", lambda: EarlyStopping("val/loss", criterion="UP"), "s", "None"),
    Bad(
        "es-pq-without-train-monitor",
        lambda: EarlyStopping("val/loss", criterion="PQ", alpha=1.0),
        "train_monitor",
        "None",
    ),
    Bad("es-min-delta", lambda: EarlyStopping("val/loss", min_delta="-0.1"), "min_delta", "'-0.1'"),
    Bad("es-restore-from", lambda: EarlyStopping("val/loss", restore_from="disk"), "restore_from", "'disk'"),
    Bad("es-start-from-epoch", lambda: EarlyStopping("val/loss", start_from_epoch=-1), "start_from_epoch", "-1"),
    Bad("es-strip", lambda: EarlyStopping("val/loss", strip=0), "strip", "0"),
    Bad("es-log-prefix", lambda: EarlyStopping("val/loss", log_prefix=3), "log_prefix", "3"),
    Bad("es-baseline", lambda: EarlyStopping("val/loss", baseline="high"), "baseline", "'high'"),
    Bad(
        "es-restore-from-checkpoint-without-one",
        fit_with(EarlyStopping("val/loss", restore_best_weights=True, restore_from="checkpoint")),
        "restore_from",
        "'checkpoint'",
    ),
    # Learning-rate scheduler spec (the scheduler/ config group)
    Bad(
        "scheduler-interval",
        lambda: SchedulerSpec(functools.partial(StepLR, step_size=1), interval="batch"),
        "scheduler.interval",
        "'batch'",
    ),
    Bad(
        "scheduler-frequency",
        lambda: SchedulerSpec(functools.partial(StepLR, step_size=1), frequency=0),
        "scheduler.frequency",
        "0",
    ),
    Bad("scheduler-not-callable", lambda: SchedulerSpec("StepLR"), "scheduler.scheduler", "'StepLR'"),
    # DataModules and augmentation
    Bad("digits-batch-size", lambda: DigitsDataModule(batch_size=0), "batch_size", "0"),
    Bad("digits-fractions", lambda: DigitsDataModule(test_fraction=0.5), "test_fraction", "0.5"),
    Bad("digits-train-subset", lambda: DigitsDataModule(train_subset=5), "train_subset", "5"),
    Bad("digits-fold-out-of-range", lambda: DigitsDataModule(fold=3, num_folds=3), "fold", "3"),
    Bad("digits-fold-float", lambda: DigitsDataModule(fold=1.0, num_folds=3), "fold", "1.0"),
    Bad("digits-fold-without-num-folds", lambda: DigitsDataModule(fold=1), "num_folds", "None"),
    Bad(
        "tokens-classes-not-below-vocab",
        lambda: SyntheticTokensDataModule(vocab_size=3, num_classes=3),
        "num_classes",
        "3",
    ),
    Bad("tokens-length-float", lambda: SyntheticTokensDataModule(length=16.0), "length", "16.0"),
    Bad("tokens-augment-on", lambda: SyntheticTokensDataModule(augment={"mixup_alpha": 0.2}), "augment", "mixup_alpha"),
    Bad("digits-num-workers", lambda: DigitsDataModule(num_workers=-1), "num_workers", "-1"),
    Bad("digits-augment-unknown", lambda: DigitsDataModule(augment={"rotate": 10}), "augment", "rotate"),
    Bad("augment-rotation", lambda: AugmentConfig(rotation_range=-1), "augment.rotation_range", "-1"),
    Bad("augment-fill-mode", lambda: AugmentConfig(fill_mode="mirror"), "augment.fill_mode", "'mirror'"),
    Bad("augment-zca-formula", lambda: AugmentConfig(zca_formula="keras2"), "augment.zca_formula", "'keras2'"),
    Bad("augment-zoom-order", lambda: AugmentConfig(zoom_range=[2, 1]), "augment.zoom_range", "[2, 1]"),
    Bad("augment-erasing-prob", lambda: AugmentConfig(erasing_prob=2), "augment.erasing_prob", "2"),
    Bad("augment-mix-mode", lambda: AugmentConfig(mix_mode="x"), "augment.mix_mode", "'x'"),
    Bad("augment-policy-on-device", lambda: AugmentConfig(policy="autoaugment"), "augment.augment_on", "'device'"),
    Bad(
        "augment-device-policy-kwargs",
        lambda: AugmentConfig(policy="randaugment", policy_kwargs={"magnitude": 40}),
        "augment.policy_kwargs.magnitude",
        "40",
    ),
    Bad("with-augmentation-not-a-datamodule", lambda: with_augmentation(object()), "datamodule", "object"),
    # Schedules and the penalty mixin
    Bad("schedule-unknown", lambda: make_schedule("nope"), "schedule", "'nope'"),
    Bad("schedule-end-at", lambda: Linear(start=0.0, end=1.0, end_at=-5), "end_at", "-5"),
    Bad("schedule-unit", lambda: Constant(0.1, unit="batch"), "unit", "'batch'"),
    Bad("mixin-l2", lambda: PenalizedModule().configure_penalty(l2=-1.0), "l2", "-1.0"),
    # Reference models
    Bad("mlp-dropout", lambda: MLPClassifier(dropout=1.0), "dropout", "1.0"),
    Bad("mlp-hidden-zero", lambda: MLPClassifier(hidden_sizes=[64, 0]), "hidden_sizes[1]", "0"),
    Bad("mlp-activation", lambda: MLPClassifier(activation="swish"), "activation", "'swish'"),
    Bad("mlp-init", lambda: MLPClassifier(init="glorot"), "init", "'glorot'"),
    Bad("cnn-init", lambda: CNNClassifier(init="he"), "init", "'he'"),
    Bad("mlp-num-classes", lambda: MLPClassifier(num_classes=1), "num_classes", "1"),
    Bad("cnn-kernel-size", lambda: CNNClassifier(kernel_size=0), "kernel_size", "0"),
    # The train entry point (python -m lightning_reg.train ...)
    Bad("train-batch-size", ("data.batch_size=0",), "batch_size", "0"),
    Bad("train-l2", ("callbacks=[default,l2]", "callbacks.l2.l2=-1"), "l2", "-1"),
    Bad(
        "train-es-patience",
        ("callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=-1"),
        "patience",
        "-1",
    ),
    Bad(
        "train-dropout-rate",
        ("callbacks=[default,dropout_constant]", "callbacks.dropout_constant.schedule.value=1.0"),
        "schedule",
        "1.0",
    ),
    Bad("train-max-norm", ("callbacks=[default,max_norm]", "callbacks.max_norm.max_norm=0"), "max_norm", "0"),
    Bad(
        "train-min-max-norm",
        ("callbacks=[default,min_max_norm]", "callbacks.min_max_norm.rate=2"),
        "rate",
        "2",
    ),
    Bad("train-activity-l2", ("callbacks=[default,activity_l2]", "callbacks.activity_l2.l2=-1"), "l2", "-1"),
    Bad("train-unit-norm", ("callbacks=[default,unit_norm]", "callbacks.unit_norm.axis=x"), "axis", "'x'"),
    Bad(
        "train-orthogonal",
        ("callbacks=[default,orthogonal]", "callbacks.orthogonal.rule.mode=diag"),
        "mode",
        "'diag'",
    ),
    Bad("train-model-dropout", ("model.dropout=1.5",), "dropout", "1.5"),
    Bad("train-test-fraction", ("data.test_fraction=0.5",), "test_fraction", "0.5"),
    Bad("train-augment-rotation", ("data.augment.rotation_range=500",), "augment.rotation_range", "500"),
    Bad("train-ckpt-path", ("ckpt_path=/nonexistent/last.ckpt",), "ckpt_path", "/nonexistent/last.ckpt"),
    Bad("train-torch-threads-zero", ("torch_threads=0",), "torch_threads", "[1, inf]; got 0"),
    Bad("train-torch-threads-word", ("torch_threads=two",), "torch_threads", "'two'"),
    Bad("train-model-target", ("model._target_=torch.nn.Linear",), "model._target_", "torch.nn.Linear"),
    # Issue 14: flags are bools, counts are ints, modes agree with the metric's name, names are checked early
    Bad(
        "es-restore-best-weights-string",
        lambda: EarlyStopping("val/loss", restore_best_weights="false"),
        "restore_best_weights",
        "'false'",
    ),
    Bad("es-verbose-string", lambda: EarlyStopping("val/loss", verbose="yes"), "verbose", "'yes'"),
    Bad("es-strict-int", lambda: EarlyStopping("val/loss", strict=1), "strict", "1"),
    Bad(
        "es-check-on-train-epoch-end-string",
        lambda: EarlyStopping("val/loss", check_on_train_epoch_end="no"),
        "check_on_train_epoch_end",
        "'no'",
    ),
    Bad("es-mode-max-on-loss", lambda: EarlyStopping("val/loss", mode="max"), "mode", "'max'"),
    Bad(
        "es-gl-mode-min-on-acc",
        lambda: EarlyStopping("val/acc", criterion="GL", alpha=1.0, mode="min"),
        "mode",
        "'min'",
    ),
    Bad(
        "es-monitor-typo-before-training",
        fit_with(MonitorCheck(), EarlyStopping("val/los")),
        "EarlyStopping.monitor",
        "'val/los'",
    ),
    Bad("es-monitor-typo-suggests", fit_with(MonitorCheck(), EarlyStopping("val/accuracy")), "val/accuracy", "val/acc"),
    Bad(
        "monitor-check-extra-name",
        fit_with(MonitorCheck(extra=[("optimized_metric", "val/f1")])),
        "optimized_metric",
        "'val/f1'",
    ),
    Bad(
        "ckpt-mode-contradicts-name",
        lambda: AtomicModelCheckpoint(dirpath="x", monitor="val/loss", mode="max"),
        "mode",
        "'max'",
    ),
    Bad("ckpt-dirpath-int", lambda: AtomicModelCheckpoint(dirpath=123), "dirpath", "123"),
    Bad("ckpt-dirpath-is-a-file", lambda: AtomicModelCheckpoint(dirpath=__file__), "dirpath", "test_bad_input.py"),
    Bad("schedule-early-cutoff-float", lambda: Early(p=0.1, cutoff=2.7, unit="epoch"), "cutoff", "2.7"),
    Bad("schedule-linear-end-at-float", lambda: Linear(start=0.0, end=0.5, end_at=10.5), "end_at", "10.5"),
    Bad("schedule-milestone-float", lambda: Milestones({0: 0.1, 2.5: 0.2}, unit="epoch"), "milestone", "2.5"),
    Bad("mnist-val-split-one-float", lambda: MNISTDataModule("data", val_split=1.0), "val_split", "1.0"),
    Bad("mnist-drop-last-string", lambda: MNISTDataModule("data", drop_last="no"), "drop_last", "'no'"),
    Bad("mnist-download-int", lambda: MNISTDataModule("data", download=0), "download", "0"),
    Bad(
        "mnist-device-resident-string",
        lambda: MNISTDataModule("data", device_resident="true"),
        "device_resident",
        "'true'",
    ),
    Bad("cifar-check-integrity-string", lambda: CIFAR10DataModule(check_integrity="off"), "check_integrity", "'off'"),
    Bad("digits-normalize-string", lambda: DigitsDataModule(normalize="yes"), "normalize", "'yes'"),
    Bad(
        "train-es-restore-no",
        ("callbacks=[default,early_stopping_restore]", "callbacks.early_stopping_restore.restore_best_weights=no"),
        "restore_best_weights",
        "'no'",
    ),
    Bad("train-test-maybe", ("test=maybe",), "test", "'maybe'"),
    Bad(
        "train-es-mode-max-on-loss",
        (
            "callbacks=[default,early_stopping]",
            "callbacks.early_stopping.monitor=val/loss",
            "callbacks.early_stopping.mode=max",
        ),
        "mode",
        "'max'",
    ),
    Bad(
        "train-gl-mode-min-on-acc",
        (
            "callbacks=[default,early_stopping_gl]",
            "callbacks.early_stopping_gl.monitor=val/acc",
            "callbacks.early_stopping_gl.mode=min",
        ),
        "mode",
        "'min'",
    ),
    Bad("train-ckpt-mode-min-on-acc", ("callbacks.model_checkpoint.mode=min",), "mode", "'min'"),
    Bad("train-lr-zero", ("optimizer.lr=0",), "optimizer.lr", "0"),
    Bad("train-lr-word", ("optimizer.lr=fast",), "optimizer.lr", "'fast'"),
    Bad("train-lr-negative", ("optimizer.lr=-0.01",), "optimizer.lr", "-0.01"),
    Bad("train-adam-betas-short", ("optimizer.betas=[0.9]",), "optimizer", "[0.9]"),
    Bad("train-sgd-momentum-negative", ("optimizer=sgd", "optimizer.momentum=-1.0"), "optimizer", "-1.0"),
    Bad("train-optimizer-unknown-arg", ("+optimizer.momentum=0.9",), "optimizer.momentum", "0.9"),
    Bad("train-seed-word", ("seed=abc",), "seed", "'abc'"),
    Bad("train-seed-float", ("seed=1.5",), "seed", "1.5"),
    Bad("train-max-epochs-float", ("trainer.max_epochs=2.5",), "trainer.max_epochs", "2.5"),
    Bad("train-max-epochs-zero", ("trainer.max_epochs=0",), "trainer.max_epochs", "0"),
    Bad("train-gradient-clip-negative", ("trainer.gradient_clip_val=-1",), "trainer.gradient_clip_val", "-1"),
    Bad("train-accumulate-zero", ("trainer.accumulate_grad_batches=0",), "trainer.accumulate_grad_batches", "0"),
    Bad("train-check-val-every-zero", ("trainer.check_val_every_n_epoch=0",), "trainer.check_val_every_n_epoch", "0"),
    Bad("train-step-size-zero", ("scheduler=step", "scheduler.scheduler.step_size=0"), "step_size", "0"),
    Bad("train-step-gamma-zero", ("scheduler=step", "scheduler.scheduler.gamma=0"), "gamma", "0"),
    Bad(
        "train-dropout-cutoff-float",
        ("callbacks=[default,dropout_early]", "callbacks.dropout_early.schedule.cutoff=2.7"),
        "cutoff",
        "2.7",
    ),
    Bad("train-optimized-metric-typo", ("optimized_metric=val/accc",), "optimized_metric", "'val/accc'"),
    Bad(
        "train-ckpt-monitor-typo",
        ("callbacks.model_checkpoint.monitor=val/accc", "callbacks.model_checkpoint.mode=max"),
        "ModelCheckpoint.monitor",
        "'val/accc'",
    ),
    Bad(
        "train-es-monitor-typo",
        ("callbacks=[default,early_stopping]", "callbacks.early_stopping.monitor=val/lss"),
        "EarlyStopping.monitor",
        "'val/lss'",
    ),
    Bad(
        "train-plateau-monitor-typo",
        ("scheduler=plateau", "scheduler.monitor=val/los"),
        "scheduler.monitor",
        "'val/los'",
    ),
    Bad("train-ckpt-path-last-in-new-dir", ("ckpt_path=last",), "ckpt_path=last", "does not exist"),
    Bad("train-ckpt-path-int", ("ckpt_path=3",), "ckpt_path", "3"),
    Bad("train-no-test-step", ("model._target_=helpers.NoTestStepModule",), "test", "test_step"),
]


def test_the_table_is_large_and_covers_every_public_class() -> None:
    assert len(CASES) >= 120
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    for prefix in (
        "penalty",
        "maxnorm",
        "dropout",
        "es",
        "digits",
        "augment",
        "schedule",
        "mixin",
        "mlp",
        "cnn",
        "train",
        "ckpt",
        "mnist",
        "cifar",
        "monitor",
    ):
        assert any(i.startswith(prefix + "-") for i in ids), prefix


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_config_error_naming_option_and_value(case: Bad, compose_cfg, tmp_path: Path) -> None:
    if callable(case.call):
        with pytest.raises(ConfigError) as info:
            case.call()
    else:
        from lightning_reg.app.train import train

        cfg = compose_cfg("trainer=debug", *case.call)
        with pytest.raises(ConfigError) as info:
            train(cfg)
        assert not (tmp_path / "run" / "checkpoints").exists(), "training started"
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert case.option in message, message
    assert case.shown in message, message
