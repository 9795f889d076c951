"""Shared LightningModule logic for the reference classifiers: loss, metrics, soft targets, optimizers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_reg.errors import ConfigError, check_int, check_range
from lightning_reg.optim import SchedulerSpec

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "ClassifierModule",
    "OptimizerFactory",
    "keras_init_",
    "make_activation",
    "soft_cross_entropy",
]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


INITS = ("torch", "keras")


def keras_init_(module: nn.Module) -> nn.Module:
    """Keras' default initialisation, in place: glorot-uniform kernels (``U(-l, l)``, ``l = sqrt(6 / (fan_in +
    fan_out))``, fans including the receptive field) and zero biases on every Linear and Conv layer.

    torch's default (``kaiming_uniform_(a=sqrt(5))`` kernels and ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    biases) differs; BatchNorm's defaults (weight 1, bias 0) are the same in both.

    Example:
        >>> lin = keras_init_(nn.Linear(784, 500))
        >>> bool(lin.bias.eq(0).all()), bool(lin.weight.abs().max() <= (6 / (784 + 500)) ** 0.5)
        (True, True)
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def make_activation(name: str) -> nn.Module:
    """Build an activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"`activation` must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}.")
    return ACTIVATIONS[name]()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for class indices ``(N,)`` or probability vectors ``(N, C)`` (MixUp/CutMix targets)."""
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"soft targets must have shape {tuple(logits.shape)}; got {tuple(target.shape)}.")
        return F.cross_entropy(logits.float(), target.float(), label_smoothing=label_smoothing)
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


class ClassifierModule(pl.LightningModule):
    """Base class for the reference classifiers: subclasses build ``self.net``; this class does the rest.

    It logs ``{train,val,test}/loss`` and ``{train,val,test}/acc`` once per epoch: each step only updates
    torchmetrics accumulators (a batch-size-weighted mean loss and a micro accuracy, synced across ranks when
    computed), and the metric objects are handed to ``self.log`` on the first step of each epoch, so Lightning
    computes them at the epoch end. That keeps ``self.log``'s per-call cost (about half a millisecond on a CPU)
    out of every step. Subclasses that override ``on_train_start`` or ``on_{train,validation,test}_epoch_start``
    call ``super()``. It accepts class-index or probability-vector targets, and builds its optimizer from a partial
    (``optimizer(params)``) and an optional :class:`~lightning_reg.optim.SchedulerSpec`. Only plain values
    go into ``hparams``, so checkpoints load with ``torch.load(weights_only=True)``.

    Example:
        >>> from torch import nn
        >>> class Tiny(ClassifierModule):
        ...     def __init__(self):
        ...         super().__init__(num_classes=3)
        ...         self.net = nn.Linear(4, 3)
        >>> Tiny()(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    accepts_soft_targets = True

    def __init__(
        self,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, low=2)
        check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)
        if optimizer is not None and not callable(optimizer):
            raise ConfigError(
                f"`optimizer` must be a callable taking parameters (a partial optimizer); got {optimizer!r}."
            )
        if scheduler is not None and not isinstance(scheduler, SchedulerSpec):
            raise ConfigError(f"`scheduler` must be a SchedulerSpec or None; got {type(scheduler).__name__}.")
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_spec = scheduler
        self.label_smoothing = float(label_smoothing)
        self.net: nn.Module = nn.Identity()
        # Training labels are checked by the loss already; skipping torchmetrics' input checks there also avoids a
        # host sync per step on accelerators.
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        # NaN losses propagate into the epoch mean, as Lightning's own mean would; no per-step NaN check (sync).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self._log_pending: set[str] = set()

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = soft_cross_entropy(logits, y, self.label_smoothing if stage == "train" else 0.0)
        hard = y.argmax(dim=-1) if y.is_floating_point() else y
        mean_loss: MeanMetric = getattr(self, f"{stage}_loss")
        acc: MulticlassAccuracy = getattr(self, f"{stage}_acc")
        # One entry per sample rather than ``weight=``: torchmetrics 1.9's MeanMetric ignores ``weight`` under
        # nan_strategy="disable".
        mean_loss.update(loss.detach().expand(x.shape[0]))
        acc.update(logits.detach(), hard)
        if stage in self._log_pending:
            # Logged once per epoch: Lightning computes (and syncs, and resets) metric objects at the epoch end.
            self._log_pending.discard(stage)
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage != "train")
            self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _start_epoch(self, stage: str) -> None:
        getattr(self, f"{stage}_loss").reset()
        getattr(self, f"{stage}_acc").reset()
        self._log_pending.add(stage)

    @override
    def on_train_start(self) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start for that epoch; its remaining steps still log.
        self._start_epoch("train")

    @override
    def on_train_epoch_start(self) -> None:
        self._start_epoch("train")

    @override
    def on_validation_epoch_start(self) -> None:
        self._start_epoch("val")

    @override
    def on_test_epoch_start(self) -> None:
        self._start_epoch("test")

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    @override
    def configure_optimizers(self) -> Any:
        factory = self.optimizer_factory or (lambda p: torch.optim.Adam(p, lr=1e-3))
        optimizer = factory(self.parameters())
        if self.scheduler_spec is None:
            return optimizer
        total: int | None = None  # the run length, when known (an unbounded run estimates inf)
        try:
            trainer = self.trainer
        except RuntimeError:  # attached to no Trainer (called by hand)
            trainer = None
        if isinstance(trainer, pl.Trainer):
            steps = trainer.estimated_stepping_batches
            total = int(steps) if math.isfinite(steps) else None
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_spec.build(optimizer, total_steps=total)}
